"""Runners: ONNX Runtime on real sessions, TensorRT sidecar rules (pure) and its skip reasons."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest

from medfuse.runtime.backends.base import check_io
from medfuse.runtime.backends.onnxruntime_backend import OnnxRuntimeRunner, physical_cores
from medfuse.runtime.backends.tensorrt_backend import (
    PlanInfo,
    TensorRTRunner,
    hardware_problem,
    plan_problem,
    stale_sidecar_problem,
    version_problem,
)
from medfuse.runtime.errors import MedfuseError
from onnx_fixtures import expected_fused, write_model

TOLERANCE = {"fp32": 0.0, "fp16": 1e-3, "int8": 1 / 255 + 1e-6}  # fp16 rounding; uint8 Q/DQ step


def _feeds(batch: int = 2, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"ct": rng.random((batch, 3, size, size), np.float32), "mri": rng.random((batch, 1, size, size), np.float32)}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnxruntime_runs_each_precision(tmp_path, precision):
    path = write_model(tmp_path / "m.onnx", precision)
    feeds = _feeds()
    with OnnxRuntimeRunner(path, precision) as runner:
        fused = runner.infer(feeds)["fused"]
        assert runner.metadata["medfuse.precision"] == precision
    assert fused.shape == (2, 3, 32, 32) and fused.dtype == np.float32
    assert np.abs(fused - expected_fused(feeds["ct"], feeds["mri"])).max() <= TOLERANCE[precision]
    assert not runner.is_active


def test_onnxruntime_takes_any_batch_and_size(tmp_path):
    with OnnxRuntimeRunner(write_model(tmp_path / "m.onnx")) as runner:
        for batch, size in [(1, 64), (5, 96)]:
            assert runner.infer(_feeds(batch, size))["fused"].shape == (batch, 3, size, size)


def test_other_input_names_are_one_clear_error(tmp_path):
    path = write_model(tmp_path / "other.onnx", names=("image", "mask", "out"))
    with pytest.raises(MedfuseError) as err:
        OnnxRuntimeRunner(path).activate()
    text = str(err.value)
    assert str(path) in text and "ct [B,3,H,W]" in text and "image" in text


def test_wrong_channel_count_is_refused(tmp_path):
    path = write_model(tmp_path / "rgb-mri.onnx", mri_channels=3)
    with pytest.raises(MedfuseError, match=r"mri \[B,1,H,W\]"):
        OnnxRuntimeRunner(path).activate()


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(MedfuseError, match="onnxruntime cannot load"):
        OnnxRuntimeRunner(bad).activate()
    with pytest.raises(MedfuseError, match="not found"):
        OnnxRuntimeRunner(tmp_path / "absent.onnx").activate()


def test_infer_before_activate_says_so(tmp_path):
    runner = OnnxRuntimeRunner(write_model(tmp_path / "m.onnx"))
    with pytest.raises(RuntimeError, match="not active"):
        runner.infer(_feeds())


def test_check_io_accepts_symbolic_dims_and_rejects_missing_output(tmp_path):
    check_io(tmp_path, {"ct": ("B", 3, "H", "W"), "mri": (-1, 1, -1, -1)}, {"fused": (-1, 3, -1, -1)})
    with pytest.raises(MedfuseError, match="outputs none"):
        check_io(tmp_path, {"ct": (1, 3, 8, 8), "mri": (1, 1, 8, 8)}, {})


def test_physical_cores_is_sane():
    import os

    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


# ------------------------------------------------------------------------------ TensorRT, pure parts
EXPORT_SIDECAR = {  # the keys export/tensorrt_build.py writes
    "format": "medfuse-tensorrt-plan", "tensorrt_version": "10.13.0.35", "gpu_name": "NVIDIA L4",
    "compute_capability": "8.9", "precision": "fp16", "version_compatible": False,
    "hardware_compatibility": "none", "preprocess_config": {"input_size": 256},
}


def test_sidecar_is_read_as_the_export_writes_it():
    info = PlanInfo.from_sidecar(EXPORT_SIDECAR)
    assert info.compute_capability == (8, 9) and info.precision == "fp16" and info.gpu_name == "NVIDIA L4"
    assert info.metadata()["medfuse.preprocess_config"] == '{"input_size": 256}'


def test_same_version_and_gpu_is_fine():
    assert plan_problem(PlanInfo.from_sidecar(EXPORT_SIDECAR), "10.13.0.35", (8, 9), "NVIDIA L4") is None


def test_other_gpu_is_named():
    text = hardware_problem(PlanInfo.from_sidecar(EXPORT_SIDECAR), (9, 0), "NVIDIA H100")
    assert "8.9" in text and "NVIDIA L4" in text and "9.0" in text and "H100" in text


def test_other_tensorrt_version_is_named():
    text = version_problem(PlanInfo.from_sidecar(EXPORT_SIDECAR), "10.14.1.48")
    assert "10.13.0.35" in text and "10.14.1.48" in text


def test_version_compatible_engine_runs_on_later_tensorrt_only():
    info = PlanInfo.from_sidecar({**EXPORT_SIDECAR, "version_compatible": True})
    assert version_problem(info, "11.0.0") is None
    assert "older" in version_problem(info, "10.12.0")


def test_engine_without_its_lean_runtime_needs_the_exact_version():
    info = PlanInfo.from_sidecar({**EXPORT_SIDECAR, "version_compatible": True, "exclude_lean_runtime": True})
    assert version_problem(info, EXPORT_SIDECAR["tensorrt_version"]) is None
    assert "without its lean runtime" in version_problem(info, "11.0.0")


def test_hardware_compatible_engine_needs_ampere_or_newer():
    info = PlanInfo.from_sidecar({**EXPORT_SIDECAR, "hardware_compatibility": "ampere_plus"})
    assert hardware_problem(info, (9, 0)) is None
    assert "8.0" in hardware_problem(info, (7, 5))


def test_stale_sidecar_is_detected():
    plan = b"engine bytes"
    info = PlanInfo.from_sidecar({**EXPORT_SIDECAR, "plan_sha256": hashlib.sha256(plan).hexdigest()})
    assert stale_sidecar_problem(info, plan) is None
    assert "another build" in stale_sidecar_problem(info, b"other bytes")


def test_malformed_sidecar_is_a_user_error(tmp_path):
    with pytest.raises(MedfuseError, match="malformed"):
        PlanInfo.from_sidecar({"compute_capability": "eight"}, tmp_path / "model.plan")


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_CUDA = importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None


@pytest.mark.skipif(HAVE_TRT and HAVE_CUDA, reason="checks the message where tensorrt/cuda-python are missing")
def test_tensorrt_runner_without_its_libraries_is_one_sentence(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\0" * 16)
    with pytest.raises(MedfuseError, match="not installed|no NVIDIA GPU"):
        TensorRTRunner(plan, PlanInfo.from_sidecar(EXPORT_SIDECAR)).activate()


@pytest.mark.gpu
@pytest.mark.skipif(not (HAVE_TRT and HAVE_CUDA), reason="TensorRT engine tests need the tensorrt and cuda-python "
                                                         "packages and an NVIDIA GPU (pip install 'medfuse[gpu]')")
def test_tensorrt_runner_matches_onnxruntime(tmp_path):
    from medfuse.runtime.backends.tensorrt_backend import probe_gpu

    gpu = probe_gpu()
    if isinstance(gpu, str):
        pytest.skip(gpu)
    from medfuse.export.tensorrt_build import BatchProfile, EngineOptions, build_engine

    onnx_path = write_model(tmp_path / "model.onnx", "fp32")
    meta = build_engine(onnx_path, tmp_path / "model.plan", EngineOptions(BatchProfile(1, 2, 4), 32,
                        tmp_path / "timing.cache"), precision="fp32", preprocess_config={"input_size": 32},
                        metadata={})
    feeds = _feeds(batch=6)  # above the profile's max: the runner splits it
    with TensorRTRunner(tmp_path / "model.plan", PlanInfo.from_sidecar(meta)) as runner:
        fused = runner.infer(feeds)["fused"]
        again = runner.infer(_feeds(batch=1))["fused"]  # buffers reused at a smaller batch
    np.testing.assert_allclose(fused, expected_fused(feeds["ct"], feeds["mri"]), atol=1e-6)
    assert again.shape == (1, 3, 32, 32)


def test_a_batch_under_the_profile_minimum_is_padded_then_cut(tmp_path):
    """A profile with MIN > 1 refused one pair (set_input_shape fails outside the profile)."""
    runner = TensorRTRunner(tmp_path / "model.plan")
    runner.min_batch = 4
    seen = []

    def profiled(feeds):
        seen.append(len(feeds["ct"]))
        return {"fused": feeds["ct"] * 2}

    runner._infer_profiled = profiled
    feeds = _feeds(batch=1)
    out = runner._infer_one(feeds)["fused"]
    assert seen == [4] and out.shape == (1, *feeds["ct"].shape[1:])
    np.testing.assert_array_equal(out, feeds["ct"] * 2)
