"""The pipeline's engine path with TensorRT faked (the real one needs a GPU): the engine is built
from the fp16 file, checked against PyTorch, listed in the manifest and served by Triton; an
engine over tolerance fails the export and leaves the folder untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from export_support import tiny_export
from medfuse.export import pipeline, variants
from medfuse.export.context import Context
from medfuse.runtime.checksum import sha256_file
from medfuse.export.tensorrt_build import BatchProfile
from medfuse.runtime.errors import MedfuseError


@pytest.fixture()
def fake_engine(tmp_path_factory, monkeypatch):
    """Reuse the session's tiny export and replace TensorRT with a plan-writing fake."""
    tiny = tiny_export(tmp_path_factory.getbasetemp())
    proto = onnx.load(str(tiny["path"]))
    monkeypatch.setattr(variants, "export_model", lambda model, size, opset: (onnx.ModelProto.FromString(
        proto.SerializeToString()), tiny["dynamic"]))
    monkeypatch.setattr(pipeline, "engine_unavailable", lambda: None)
    calls = {}

    def build_engine(onnx_path, plan_path, options, *, precision, preprocess_config, metadata):
        calls["source"], calls["options"] = Path(onnx_path).name, options
        Path(plan_path).write_bytes(b"PLAN")
        info = {"tensorrt_version": "10.13.3", "gpu_name": "Fake GPU", "precision": precision,
                "plan_sha256": sha256_file(plan_path), "preprocess_config": preprocess_config}
        Path(str(plan_path) + ".json").write_text(json.dumps(info))
        return info

    def engine_outputs(plan, info, ct, mri, min_batch=1):
        calls["min_batch"] = min_batch
        from medfuse.export.runners import torch_outputs
        return torch_outputs(tiny["model"], ct, mri) + calls.get("error", 1e-4)

    monkeypatch.setattr(pipeline, "build_engine", build_engine)
    monkeypatch.setattr(pipeline, "engine_outputs", engine_outputs)
    return tiny, calls


def test_engine_is_built_from_fp16_checked_and_listed(fake_engine, tmp_path):
    tiny, calls = fake_engine
    out, repo = tmp_path / "artifacts", tmp_path / "triton"
    result = pipeline.run_export(pipeline.ExportRequest(tiny["checkpoint"], out, fp16=True, batch=BatchProfile(2, 4, 8),
                                                        version_compatible=True))
    assert calls["source"] == "model.fp16.onnx" and calls["min_batch"] == 2
    assert calls["options"].version_compatible and calls["options"].batch.max == 8
    names = [p.name for p in result.files]
    assert names == ["model.onnx", "model.fp16.onnx", "model.plan", "model.plan.json", "manifest.json"]
    plan = next(a for a in json.loads((out / "manifest.json").read_text())["artifacts"] if a["format"] == "tensorrt-plan")
    assert plan["file"] == "model.plan" and plan["precision"] == "fp16" and plan["sha256"] == sha256_file(out / "model.plan")
    assert plan["parity"]["passed"] and plan["parity"]["max_abs"] == pytest.approx(1e-4, rel=1e-2)
    assert result.notes == []
    # Triton sends batches from 1, so with a repository the profile must start at 1
    with pytest.raises(MedfuseError, match="Triton sends batches from 1"):
        pipeline.run_export(pipeline.ExportRequest(tiny["checkpoint"], tmp_path / "b", batch=BatchProfile(2, 4, 8),
                                                   triton_repo=repo))
    pipeline.run_export(pipeline.ExportRequest(tiny["checkpoint"], tmp_path / "c", fp16=True,
                                               batch=BatchProfile(1, 4, 8), triton_repo=repo))
    assert (repo / "medfuse_trt" / "1" / "model.plan").read_bytes() == b"PLAN"
    assert (repo / "medfuse_onnx" / "1" / "model.onnx").is_file()


def test_engine_over_tolerance_fails_and_writes_nothing(fake_engine, tmp_path):
    tiny, calls = fake_engine
    calls["error"] = 0.5
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"an earlier export")
    with pytest.raises(MedfuseError, match="model.plan: fp16 output differs"):
        pipeline.run_export(pipeline.ExportRequest(tiny["checkpoint"], out, triton_repo=tmp_path / "triton"))
    assert [p.name for p in out.iterdir()] == ["model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"an earlier export"
    assert not (tmp_path / "triton").exists()


def test_skip_builds_no_engine(fake_engine, tmp_path):
    tiny, calls = fake_engine
    result = pipeline.run_export(pipeline.ExportRequest(tiny["checkpoint"], tmp_path / "a", engine="skip"))
    assert "source" not in calls and [p.name for p in result.files] == ["model.onnx", "manifest.json"]


def test_stale_artifacts_of_an_earlier_export_are_removed(fake_engine, tmp_path):
    tiny, _ = fake_engine
    out = tmp_path / "a"
    out.mkdir()
    for stale in ("model.int8.onnx", "model.plan", "model.plan.json"):
        (out / stale).write_bytes(b"old")
    (out / "notes.txt").write_text("the user's own file")
    pipeline.run_export(pipeline.ExportRequest(tiny["checkpoint"], out, engine="skip"))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "notes.txt"]
    np.testing.assert_equal(json.loads((out / "manifest.json").read_text())["artifacts"][0]["file"], "model.onnx")


def test_half_check_skipped_for_large_fixed_inputs(tmp_path):
    from medfuse.runtime.preprocess import PreprocessConfig

    ctx = Context(pipeline.ExportRequest(tmp_path / "c.pt", tmp_path), tmp_path,
                           preprocess_config=PreprocessConfig(input_size=256), spatial_dynamic=False)
    assert "too slow" in variants.check_half_arithmetic(ctx, tmp_path / "model.fp16.onnx")["skipped"]


class _BatchSensitive:
    """A 'model' whose output depends on how many images share the call, as an ill-conditioned
    network's does through float rounding (a BatchNorm channel of near-zero variance)."""

    def eval(self):
        return self

    def __call__(self, ct, mri):
        return ct + (0.01 if len(ct) == 1 else 0.0)


def test_an_unstable_model_is_named_as_the_cause_not_the_export(tmp_path):
    ct, mri = np.zeros((3, 3, 8, 8), np.float32), np.zeros((3, 1, 8, 8), np.float32)
    ctx = Context(pipeline.ExportRequest(tmp_path / "c.pt", tmp_path), tmp_path, model=_BatchSensitive(),
                  ct=ct, mri=mri, reference=ct.copy())
    with pytest.raises(MedfuseError, match="numerically unstable") as raised:
        variants.refuse_unstable_model(ctx, tolerance=1e-4, onnx_error=3e-2)
    assert "1.0e-02 apart" in str(raised.value) and "3.0e-02" in str(raised.value)
    ctx.model = type("Stable", (_BatchSensitive,), {"__call__": lambda self, ct, mri: ct})()
    variants.refuse_unstable_model(ctx, tolerance=1e-4, onnx_error=3e-2)  # PyTorch agrees with itself: no claim
