"""--backend/--precision rules, on `Available` values (no GPU needed) and one real probe."""

from __future__ import annotations

import pytest

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.model_dir import open_model_dir
from medfuse.runtime.selection import Available, choose, make_runner, probe
from onnx_fixtures import write_model_dir

CPU = ("CPUExecutionProvider",)
GPU = ("CUDAExecutionProvider", "CPUExecutionProvider")
TRT_EP = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ALL_ONNX = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def avail(onnx=ALL_ONNX, plan=None, problem=None, providers=CPU) -> Available:
    return Available(dict(onnx), plan, plan is not None, problem, providers)


def test_auto_prefers_a_runnable_engine():
    choice = choose("auto", "auto", avail(plan="fp16", providers=GPU))
    assert (choice.backend, choice.precision, choice.artifact) == ("tensorrt", "fp16", "model.plan")


def test_auto_skips_an_engine_built_elsewhere_and_says_why():
    choice = choose("auto", "auto", avail(plan="fp16", problem="built for compute capability 8.9", providers=GPU))
    assert (choice.backend, choice.precision) == ("onnxruntime-cuda", "fp16")
    assert "8.9" in choice.reason


def test_auto_on_cpu_takes_int8_when_exported():
    choice = choose("auto", "auto", avail())
    assert (choice.backend, choice.precision, choice.artifact) == ("onnxruntime-cpu", "int8", "model.int8.onnx")
    assert "no TensorRT engine" in choice.reason and "no CUDA provider" in choice.reason


def test_auto_on_cpu_falls_back_to_fp32_not_fp16():
    choice = choose("auto", "auto", avail(onnx={"fp32": "model.onnx", "fp16": "model.fp16.onnx"}))
    assert choice.precision == "fp32"


def test_auto_with_explicit_precision_skips_an_engine_of_another_precision():
    choice = choose("auto", "fp32", avail(plan="fp16", providers=GPU))
    assert (choice.backend, choice.precision) == ("onnxruntime-cuda", "fp32")
    assert "fp16, not fp32" in choice.reason


def test_auto_never_picks_the_onnxruntime_tensorrt_provider():
    assert choose("auto", "auto", avail(providers=TRT_EP)).backend == "onnxruntime-cuda"
    assert choose("onnxruntime-tensorrt", "fp16", avail(providers=TRT_EP)).backend == "onnxruntime-tensorrt"


def test_the_cpu_int8_file_is_refused_by_the_tensorrt_provider():
    """medfuse's int8 ONNX is asymmetric uint8 QDQ; TensorRT quantizes symmetrically only."""
    with pytest.raises(MedfuseError, match="TensorRT cannot run"):
        choose("onnxruntime-tensorrt", "int8", avail(providers=TRT_EP))


def test_the_tensorrt_provider_caches_engines_and_timings_per_onnxruntime_version():
    import onnxruntime

    from medfuse.runtime.backends.onnxruntime_backend import provider_options

    trt_ep, options = provider_options("tensorrt", "fp16", None)[0]
    assert trt_ep == "TensorrtExecutionProvider" and options["trt_fp16_enable"]
    assert options["trt_engine_cache_enable"] and options["trt_timing_cache_enable"]
    assert options["trt_engine_cache_path"].endswith(f"ort-tensorrt-{onnxruntime.__version__}")


@pytest.mark.parametrize("backend, av, needle", [
    ("tensorrt", avail(), "needs model.plan"),
    ("tensorrt", avail(plan="fp16", problem="the tensorrt package is not installed"), "tensorrt package"),
    ("onnxruntime-cuda", avail(), "CUDAExecutionProvider"),
    ("onnxruntime-tensorrt", avail(providers=GPU), "TensorrtExecutionProvider"),
    ("onnxruntime-cpu", avail(providers=()), "onnxruntime, which is not installed"),
])
def test_explicit_backend_that_cannot_run_names_what_is_missing(backend, av, needle):
    with pytest.raises(MedfuseError, match=needle):
        choose(backend, "auto", av)


def test_explicit_precision_without_its_file_says_how_to_export_it():
    with pytest.raises(MedfuseError, match=r"model.int8.onnx.*--int8 --calib"):
        choose("onnxruntime-cpu", "int8", avail(onnx={"fp32": "model.onnx"}))


def test_engine_precision_mismatch():
    with pytest.raises(MedfuseError, match="fp16 engine"):
        choose("tensorrt", "int8", avail(plan="fp16", providers=GPU))


def test_fp16_on_cpu_runs_when_asked_and_warns():
    choice = choose("onnxruntime-cpu", "fp16", avail())
    assert choice.precision == "fp16" and "slowly" in choice.reason


def test_nothing_runnable():
    with pytest.raises(MedfuseError, match="no ONNX model"):
        choose("auto", "auto", avail(onnx={}, plan="fp16", problem="no NVIDIA GPU is visible here"))
    with pytest.raises(MedfuseError, match="onnxruntime is not installed"):
        choose("auto", "auto", avail(providers=()))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(MedfuseError, match="onnxruntime-cpu"):
        choose("openvino", "auto", avail())


def test_probe_and_runner_on_a_real_folder(tmp_path):
    model = open_model_dir(write_model_dir(tmp_path, precisions=("fp32", "int8")))
    av = probe(model)
    assert av.onnx == {"fp32": "model.onnx", "int8": "model.int8.onnx"} and not av.has_plan
    choice = choose("onnxruntime-cpu", "auto", av)
    with make_runner(choice, model) as runner:
        assert runner.path.name == "model.int8.onnx" and runner.name == "onnxruntime-cpu"
