"""TensorRT engine building: the pure parts run everywhere; a fake TensorRT checks the call sequence;
a real build runs only where an NVIDIA GPU and the tensorrt package exist."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from medfuse.export import tensorrt_build as tb
from medfuse.runtime.errors import MedfuseError

NO_ENGINE = tb.engine_unavailable()


# ------------------------------------------------------------------ profile parsing and shapes
@pytest.mark.parametrize("text, expected", [("1,4,32", (1, 4, 32)), ("8", (8, 8, 8)), (" 2, 2 ,3", (2, 2, 3))])
def test_batch_profile_parses(text, expected):
    profile = tb.BatchProfile.parse(text)
    assert (profile.min, profile.opt, profile.max) == expected


@pytest.mark.parametrize("text", ["a,b,c", "4,2,1", "0,1,2", "1,2", "1,2,3,4", ""])
def test_bad_batch_profile_is_a_user_error(text):
    with pytest.raises(MedfuseError, match="--batch"):
        tb.BatchProfile.parse(text)


def test_profile_shapes_per_input():
    shapes = tb.BatchProfile(1, 4, 32).shapes(256)
    assert shapes["ct"] == {"min": [1, 3, 256, 256], "opt": [4, 3, 256, 256], "max": [32, 3, 256, 256]}
    assert shapes["mri"]["max"] == [32, 1, 256, 256]


def test_network_flags_strongly_typed_on_10_and_zero_on_11():
    flag = types.SimpleNamespace(STRONGLY_TYPED=3)
    assert tb.network_flags(types.SimpleNamespace(__version__="10.13.3", NetworkDefinitionCreationFlag=flag)) == 1 << 3
    assert tb.network_flags(types.SimpleNamespace(__version__="11.4.1", NetworkDefinitionCreationFlag=flag)) == 0


def test_sidecar_content():
    options = tb.EngineOptions(batch=tb.BatchProfile(1, 4, 32), input_size=256, timing_cache=Path("t.cache"),
                               version_compatible=True, exclude_lean_runtime=True, hardware_compat=True)
    side = tb.sidecar(trt_version="10.13.3", gpu=tb.GpuInfo("NVIDIA H100", "9.0"), precision="fp16", options=options,
                      onnx_sha256="ab" * 32, preprocess_config={"input_size": 256}, plan_sha256="cd" * 32,
                      metadata={"medfuse.checkpoint_sha256": "ef" * 32})
    assert side["tensorrt_version"] == "10.13.3" and side["gpu_name"] == "NVIDIA H100"
    assert side["compute_capability"] == "9.0" and side["precision"] == "fp16"
    assert side["profile"]["batch"] == {"min": 1, "opt": 4, "max": 32}
    assert side["profile"]["shapes"]["ct"]["opt"] == [4, 3, 256, 256]
    assert side["source_onnx_sha256"] == "ab" * 32 and side["plan_sha256"] == "cd" * 32
    assert side["preprocess_config"] == {"input_size": 256}
    assert side["version_compatible"] and side["exclude_lean_runtime"] and side["hardware_compatibility"] == "ampere_plus"
    assert side["metadata"]["medfuse.checkpoint_sha256"] == "ef" * 32
    json.dumps(side, allow_nan=False)


# ------------------------------------------------------------------ GPU check before TensorRT
class _ImportSpy:
    def __init__(self):
        self.asked = []

    def find_spec(self, name, path=None, target=None):
        if name == "tensorrt" or name.startswith("tensorrt."):
            self.asked.append(name)
            raise ImportError("blocked by the test")
        return None


def _fake_cudart(count: int) -> types.ModuleType:
    err = types.SimpleNamespace(cudaSuccess="ok", name="ok")
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaError_t = types.SimpleNamespace(cudaSuccess=err)
    rt.cudaGetDeviceCount = lambda: (err, count)
    rt.cudaGetDeviceProperties = lambda i: (err, types.SimpleNamespace(name=b"Fake GPU\x00", major=8, minor=9))
    return rt


def _install_cuda(monkeypatch, rt: types.ModuleType) -> None:
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name, mod in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt)):
        monkeypatch.setitem(sys.modules, name, mod)


def test_no_device_means_tensorrt_is_never_imported(monkeypatch):
    _install_cuda(monkeypatch, _fake_cudart(count=0))
    spy = _ImportSpy()
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(sys, "meta_path", [spy, *sys.meta_path])
    reason = tb.engine_unavailable()
    assert "no CUDA device" in reason and "NVIDIA GPU" in reason
    assert spy.asked == []


def test_device_found_then_missing_tensorrt_is_named(monkeypatch):
    _install_cuda(monkeypatch, _fake_cudart(count=1))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # None in sys.modules makes the import fail
    assert tb.detect_gpu() == tb.GpuInfo("Fake GPU", "8.9")
    assert "tensorrt package is not installed" in tb.engine_unavailable()


def test_this_machine_reports_why_there_is_no_engine():
    if NO_ENGINE is None:
        pytest.skip("this machine has an NVIDIA GPU and TensorRT")
    assert "NVIDIA GPU" in NO_ENGINE and "\n" not in NO_ENGINE


# ------------------------------------------------------------------ the builder call sequence, faked
class _FakeTrt(types.ModuleType):
    """Just enough of the TensorRT 10 Python API to record what build_engine asks of it."""

    def __init__(self, version="10.13.3", parse_ok=True):
        super().__init__("tensorrt")
        self.__version__ = version
        self.calls: list = []
        self.parse_ok = parse_ok
        ns = types.SimpleNamespace
        self.NetworkDefinitionCreationFlag = ns(STRONGLY_TYPED=0)
        self.MemoryPoolType = ns(WORKSPACE="WORKSPACE")
        self.BuilderFlag = ns(VERSION_COMPATIBLE="VERSION_COMPATIBLE", EXCLUDE_LEAN_RUNTIME="EXCLUDE_LEAN_RUNTIME")
        self.HardwareCompatibilityLevel = ns(AMPERE_PLUS="AMPERE_PLUS")
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        fake = self

        class Cache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                return self.blob + b"+timed"

        class Config:
            def __init__(self):
                self.hardware_compatibility_level = None
                self.cache = None

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("pool", pool, size))

            def add_optimization_profile(self, profile):
                fake.calls.append(("profile", dict(profile.shapes)))

            def set_flag(self, flag):
                fake.calls.append(("flag", flag))

            def create_timing_cache(self, blob):
                fake.calls.append(("cache_in", bytes(blob)))
                return Cache(bytes(blob))

            def set_timing_cache(self, cache, ignore_mismatch):
                if cache.blob.startswith(b"FOREIGN") and not ignore_mismatch:
                    return False  # TensorRT refuses another GPU's or version's cache, attaches nothing
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

        class Builder:
            def __init__(self, logger):
                self.config = None

            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return object()

            def create_builder_config(self):
                self.config = Config()
                return self.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("hw", config.hardware_compatibility_level))
                return b"PLAN-BYTES"

        class Parser:
            num_errors = 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                fake.calls.append(("parse", Path(path).name))
                return fake.parse_ok

            def get_error(self, i):
                return ns(desc=lambda: "Unsupported operator FancyOp")

        self.Builder, self.OnnxParser = Builder, Parser


def _fake_env(monkeypatch, trt: _FakeTrt) -> None:
    _install_cuda(monkeypatch, _fake_cudart(count=1))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)


def _options(tmp_path: Path, **kw) -> tb.EngineOptions:
    return tb.EngineOptions(batch=tb.BatchProfile(1, 4, 32), input_size=64, timing_cache=tmp_path / "cache" / "t.cache", **kw)


def test_fake_build_writes_plain_plan_sidecar_and_reuses_the_timing_cache(monkeypatch, tmp_path):
    trt = _FakeTrt()
    _fake_env(monkeypatch, trt)
    onnx_file = tmp_path / "model.fp16.onnx"
    onnx_file.write_bytes(b"onnx")
    plan = tmp_path / "model.plan"
    kwargs = dict(precision="fp16", preprocess_config={"input_size": 64}, metadata={})
    side = tb.build_engine(onnx_file, plan, _options(tmp_path, version_compatible=True, exclude_lean_runtime=True,
                                                     hardware_compat=True), **kwargs)
    assert plan.read_bytes() == b"PLAN-BYTES"  # TensorRT's bytes, no header
    assert json.loads((tmp_path / "model.plan.json").read_text()) == side
    assert side["plan_sha256"] == tb.sha256_file(plan) and side["source_onnx_sha256"] == tb.sha256_file(onnx_file)
    assert ("network", 1) in trt.calls and ("parse", "model.fp16.onnx") in trt.calls
    assert ("pool", "WORKSPACE", tb.WORKSPACE_BYTES) in trt.calls
    assert ("flag", "VERSION_COMPATIBLE") in trt.calls and ("flag", "EXCLUDE_LEAN_RUNTIME") in trt.calls
    assert ("hw", "AMPERE_PLUS") in trt.calls
    profile = next(c[1] for c in trt.calls if c[0] == "profile")
    assert profile["ct"] == ((1, 3, 64, 64), (4, 3, 64, 64), (32, 3, 64, 64))
    assert ("cache_in", b"") in trt.calls
    trt.calls.clear()
    tb.build_engine(onnx_file, plan, _options(tmp_path, version_compatible=True), **kwargs)  # reuses the cache
    assert ("cache_in", b"+timed") in trt.calls
    assert ("flag", "VERSION_COMPATIBLE") in trt.calls and ("flag", "EXCLUDE_LEAN_RUNTIME") not in trt.calls


def test_a_timing_cache_of_another_gpu_is_replaced_not_fatal(monkeypatch, tmp_path):
    """The default cache path is shared by every machine with this home folder; TensorRT refuses a
    foreign cache, after which get_timing_cache() gave None and the build died after writing the plan."""
    trt = _FakeTrt()
    _fake_env(monkeypatch, trt)
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    options = _options(tmp_path)
    options.timing_cache.parent.mkdir(parents=True)
    options.timing_cache.write_bytes(b"FOREIGN-cache")
    tb.build_engine(tmp_path / "m.onnx", tmp_path / "model.plan", options, precision="fp32", preprocess_config={},
                    metadata={})
    assert ("cache_in", b"FOREIGN-cache") in trt.calls and ("cache_in", b"") in trt.calls
    assert (tmp_path / "model.plan.json").is_file() and options.timing_cache.read_bytes() == b"+timed"


def test_hardware_compat_needs_an_ampere_gpu_to_build_on(monkeypatch, tmp_path):
    trt = _FakeTrt()
    _fake_env(monkeypatch, trt)
    monkeypatch.setattr(tb, "detect_gpu", lambda: tb.GpuInfo("Tesla T4", "7.5"))
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    with pytest.raises(MedfuseError, match="compute capability 7.5"):
        tb.build_engine(tmp_path / "m.onnx", tmp_path / "model.plan", _options(tmp_path, hardware_compat=True),
                        precision="fp32", preprocess_config={}, metadata={})


def test_fake_build_on_tensorrt_11_uses_no_creation_flag(monkeypatch, tmp_path):
    trt = _FakeTrt(version="11.4.1")
    _fake_env(monkeypatch, trt)
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    tb.build_engine(tmp_path / "m.onnx", tmp_path / "model.plan", _options(tmp_path), precision="fp32",
                    preprocess_config={}, metadata={})
    assert ("network", 0) in trt.calls


def test_parser_errors_are_listed(monkeypatch, tmp_path):
    _fake_env(monkeypatch, _FakeTrt(parse_ok=False))
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    with pytest.raises(MedfuseError, match="Unsupported operator FancyOp"):
        tb.build_engine(tmp_path / "m.onnx", tmp_path / "model.plan", _options(tmp_path), precision="fp32",
                        preprocess_config={}, metadata={})
    assert not (tmp_path / "model.plan").exists()


# ------------------------------------------------------------------ the real thing
@pytest.mark.gpu
@pytest.mark.skipif(NO_ENGINE is not None, reason=f"TensorRT engine tests need it: {NO_ENGINE}")
def test_real_engine_build(tmp_path):
    from export_support import make_tiny_checkpoint

    from medfuse.export.pipeline import ExportRequest, run_export

    out = tmp_path / "artifacts"
    run_export(ExportRequest(make_tiny_checkpoint(tmp_path / "tiny.pt"), out, fp16=True, engine="require",
                             batch=tb.BatchProfile(1, 2, 4), timing_cache=tmp_path / "timing.cache"))
    side = json.loads((out / "model.plan.json").read_text())
    assert side["precision"] == "fp16" and side["plan_sha256"] == tb.sha256_file(out / "model.plan")
    assert (tmp_path / "timing.cache").stat().st_size > 0
