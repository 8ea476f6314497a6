"""Triton model repository: the layout Triton expects, and configs that tritonclient's protobuf accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfuse.export.triton import MODELS, config_text, write_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] not installed")
text_format = pytest.importorskip("google.protobuf.text_format")


def _parse(path: Path):
    # Parse (not Merge) rejects unknown fields and repeated scalars, as Triton's own loader does.
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _artifacts(tmp_path: Path) -> tuple[Path, Path]:
    onnx_file, plan = tmp_path / "model.onnx", tmp_path / "model.plan"
    onnx_file.write_bytes(b"onnx bytes")
    plan.write_bytes(b"plan bytes")
    return onnx_file, plan


def test_onnx_only_repository(tmp_path: Path):
    onnx_file, _ = _artifacts(tmp_path)
    repo = tmp_path / "repo"
    written = write_repository(repo, onnx_path=onnx_file, plan_path=None, max_batch=16, input_size=64)
    assert written == [repo / "medfuse_onnx"]
    assert (repo / "medfuse_onnx" / "1" / "model.onnx").read_bytes() == b"onnx bytes"
    cfg = _parse(repo / "medfuse_onnx" / "config.pbtxt")
    assert cfg.name == "medfuse_onnx" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 16
    dims = {t.name: list(t.dims) for t in [*cfg.input, *cfg.output]}
    assert dims == {"ct": [3, 64, 64], "mri": [1, 64, 64], "fused": [3, 64, 64]}  # no batch dim
    assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in [*cfg.input, *cfg.output])
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert cfg.instance_group[0].count == 1


def test_engine_model_written_when_plan_exists(tmp_path: Path):
    onnx_file, plan = _artifacts(tmp_path)
    repo = tmp_path / "repo"
    write_repository(repo, onnx_path=onnx_file, plan_path=plan, max_batch=32, input_size=256)
    cfg = _parse(repo / "medfuse_trt" / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 32
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (repo / "medfuse_trt" / "1" / "model.plan").read_bytes() == b"plan bytes"
    for config in repo.glob("*/config.pbtxt"):
        _parse(config)


def test_rewrite_replaces_the_model_folder(tmp_path: Path):
    onnx_file, _ = _artifacts(tmp_path)
    repo = tmp_path / "repo"
    (repo / "medfuse_onnx" / "2").mkdir(parents=True)  # a stale version from an older export
    write_repository(repo, onnx_path=onnx_file, plan_path=None, max_batch=1, input_size=32)
    assert sorted(p.name for p in (repo / "medfuse_onnx").iterdir()) == ["1", "config.pbtxt"]
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]


def test_an_export_without_engine_removes_an_earlier_engine_model(tmp_path: Path):
    """Triton would serve the old engine beside the new ONNX model."""
    onnx_file, plan = _artifacts(tmp_path)
    repo = tmp_path / "repo"
    write_repository(repo, onnx_path=onnx_file, plan_path=plan, max_batch=4, input_size=32)
    (repo / "my_other_model").mkdir()  # the user's own models stay
    write_repository(repo, onnx_path=onnx_file, plan_path=None, max_batch=4, input_size=32)
    assert sorted(p.name for p in repo.iterdir()) == ["medfuse_onnx", "my_other_model"]


@pytest.mark.parametrize("max_batch", [1, 3, 64])
def test_every_config_parses(max_batch: int):
    for model in MODELS.values():
        cfg = text_format.Parse(config_text(model, max_batch=max_batch, input_size=128), model_config_pb2.ModelConfig())
        assert cfg.max_batch_size == max_batch
        assert max(cfg.dynamic_batching.preferred_batch_size) <= max_batch


def test_unknown_field_would_be_rejected():
    # Guards the guard: the parser used above does fail on a field Triton does not know.
    with pytest.raises(text_format.ParseError):
        text_format.Parse('name: "x"\nmax_batch: 4\n', model_config_pb2.ModelConfig())
