"""TensorRT runner for `model.plan` (TensorRT 10/11 name-based tensor API only).

The engine is plain TensorRT; what it was built for (TensorRT version, GPU compute capability,
precision, preprocessing) is in the sidecar `model.plan.json`. That sidecar is checked before
deserialising, so an engine built elsewhere gives one sentence instead of a TensorRT error dump.

Order of work in `activate`, on purpose: cuda-python asks the driver for a GPU first
(`cudaGetDeviceCount`); only then is any TensorRT object created, since on a machine without a
driver TensorRT can crash the process instead of raising. Buffers: one device allocation and one
pinned host mirror per tensor, reused across calls and grown when a larger batch comes.
tensorrt, tensorrt_lean and cuda-python are imported inside functions only.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medfuse.runtime.backends.base import Runner, check_io
from medfuse.runtime.errors import MedfuseError

INSTALL_HINT = "pip install 'medfuse[gpu]'"
# Python module -> distributions that may carry it (the version is read without importing it).
TRT_MODULES: dict[str, tuple[str, ...]] = {
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings"),
    "tensorrt_lean": ("tensorrt-lean", "tensorrt-lean-cu13", "tensorrt-lean-cu12", "tensorrt-lean-cu13-bindings",
                      "tensorrt-lean-cu12-bindings"),
}
# Hardware-compatibility levels TensorRT offers -> the smallest compute capability they run on.
HARDWARE_COMPAT_MIN_CC: dict[str, tuple[int, int]] = {"ampere_plus": (8, 0), "ampere+": (8, 0)}


# ------------------------------------------------------------------------------ sidecar (pure)
def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _capability(value) -> tuple[int, int] | None:
    """'8.9', [8, 9], (8, 9) or {'major': 8, 'minor': 9} -> (8, 9)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return int(value["major"]), int(value["minor"])
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    major, _, minor = str(value).partition(".")
    return int(major), int(minor or 0)


@dataclass(frozen=True)
class PlanInfo:
    """What model.plan.json says about the engine."""

    tensorrt_version: str | None = None
    compute_capability: tuple[int, int] | None = None
    gpu_name: str | None = None
    precision: str | None = None
    version_compatible: bool = False
    exclude_lean_runtime: bool = False  # version-compatible without its lean runtime: same version only
    hardware_compatibility: str | None = None  # None/"none", "ampere_plus", "same_compute_capability"
    preprocess_config: dict | None = None
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_sidecar(cls, data: Mapping, path: Path | None = None) -> PlanInfo:
        try:
            hw = data.get("hardware_compatibility", data.get("hardware_compat"))
            return cls(
                tensorrt_version=data.get("tensorrt_version"),
                compute_capability=_capability(data.get("compute_capability")),
                gpu_name=data.get("gpu_name", data.get("gpu")),
                precision=data.get("precision"),
                version_compatible=bool(data.get("version_compatible", False)),
                exclude_lean_runtime=bool(data.get("exclude_lean_runtime", False)),
                hardware_compatibility=(str(hw).lower() if hw not in (None, False) else None),
                preprocess_config=data.get("preprocess_config"),
                raw=dict(data),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise MedfuseError(f"the engine sidecar is malformed ({err}); rebuild the engine", path) from None

    def metadata(self) -> dict[str, str]:
        """The same medfuse.* keys an ONNX file carries, from the sidecar."""
        out = {}
        if self.preprocess_config is not None:
            out["medfuse.preprocess_config"] = json.dumps(self.preprocess_config, sort_keys=True)
        if self.precision:
            out["medfuse.precision"] = self.precision
        return out


def _cc_text(cc: tuple[int, int] | None) -> str:
    return "unknown" if cc is None else f"{cc[0]}.{cc[1]}"


def version_problem(info: PlanInfo, runtime_version: str) -> str | None:
    """Why this TensorRT cannot run the engine, or None. Plain engines need the exact version
    they were built with; version-compatible ones any later one."""
    if not info.tensorrt_version or not runtime_version:
        return None
    built, here = _version_tuple(info.tensorrt_version), _version_tuple(runtime_version)
    if info.version_compatible and info.exclude_lean_runtime and built != here:
        # The plan does not carry the lean runtime that would run it elsewhere (IRuntime::loadRuntime).
        return (f"the engine was built with TensorRT {info.tensorrt_version} version-compatible but without its "
                f"lean runtime, so it runs only on that version's tensorrt-lean; this machine has {runtime_version}")
    if info.version_compatible:
        if here < built:
            return (f"the engine was built with TensorRT {info.tensorrt_version} (version-compatible); "
                    f"this machine has the older TensorRT {runtime_version}")
        return None
    if built != here:
        return (f"the engine was built with TensorRT {info.tensorrt_version}; this machine has "
                f"TensorRT {runtime_version}, and a plain engine runs only on the version that built it")
    return None


def hardware_problem(info: PlanInfo, cc: tuple[int, int], gpu_name: str = "") -> str | None:
    """Why this GPU cannot run the engine, or None."""
    if info.compute_capability is None:
        return None
    here = f"compute capability {_cc_text(cc)}" + (f" ({gpu_name})" if gpu_name else "")
    built = f"compute capability {_cc_text(info.compute_capability)}" + (
        f" ({info.gpu_name})" if info.gpu_name else "")
    level = (info.hardware_compatibility or "none").lower()
    if level in HARDWARE_COMPAT_MIN_CC:
        if cc < HARDWARE_COMPAT_MIN_CC[level]:
            return f"the engine was built for {level} GPUs (compute capability >= 8.0); this GPU has {here}"
        return None
    if cc != info.compute_capability:
        return f"the engine was built for a GPU of {built}; this GPU has {here}"
    return None


def stale_sidecar_problem(info: PlanInfo | None, plan_bytes: bytes) -> str | None:
    """The sidecar names the plan's sha256: a mismatch means it describes another build."""
    expected = info.raw.get("plan_sha256") if info else None
    if expected and hashlib.sha256(plan_bytes).hexdigest() != expected:
        return "model.plan.json describes another build of the engine (plan_sha256 differs)"
    return None


def plan_problem(info: PlanInfo | None, runtime_version: str, cc: tuple[int, int], gpu_name: str = "") -> str | None:
    if info is None:
        return None
    return version_problem(info, runtime_version) or hardware_problem(info, cc, gpu_name)


# ------------------------------------------------------------------------------ environment probes
def installed_tensorrt(lean_ok: bool = False) -> tuple[str, str | None] | None:
    """(module, version or None) of the TensorRT runtime that would be used, without importing it."""
    for module in ("tensorrt", "tensorrt_lean") if lean_ok else ("tensorrt",):
        if importlib.util.find_spec(module) is None:
            continue
        for dist in TRT_MODULES[module]:
            try:
                return module, importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return module, None
    return None


def import_cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise MedfuseError(f"cuda-python is not installed (TensorRT buffers need cuda.bindings): "
                           f"{INSTALL_HINT}") from None
    return cudart


def _cuda(cudart, result, what: str):
    """Unpack a cuda-python (err, value...) result; raise on error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        raise RuntimeError(f"CUDA {what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class GpuInfo:
    count: int
    name: str
    compute_capability: tuple[int, int]


def probe_gpu(cudart=None) -> GpuInfo | str:
    """The first GPU, or a sentence saying why there is none usable."""
    if cudart is None:
        try:
            cudart = import_cudart()
        except MedfuseError as err:
            return str(err)
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        # e.g. cudaErrorInsufficientDriver: cuda-python built for a newer CUDA than the driver
        return f"no NVIDIA GPU is usable here (cudaGetDeviceCount: {getattr(err, 'name', err)})"
    if count == 0:
        return "no NVIDIA GPU is visible here (cudaGetDeviceCount found none)"
    prop = _cuda(cudart, cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(count, name, (int(prop.major), int(prop.minor)))


def import_tensorrt(prefer_lean: bool):
    """`tensorrt`, or `tensorrt_lean` for a version-compatible engine when the full one is missing."""
    found = installed_tensorrt(lean_ok=prefer_lean)
    if found is None:
        raise MedfuseError(f"the tensorrt package is not installed: {INSTALL_HINT}")
    import importlib

    return importlib.import_module(found[0])


# ------------------------------------------------------------------------------ buffers
class _Buffer:
    """One device allocation and its pinned host mirror, grown (never shrunk) on demand."""

    def __init__(self, cudart):
        self._cudart = cudart
        self.nbytes = 0
        self.device = 0
        self.host = 0

    def ensure(self, nbytes: int) -> None:
        if nbytes <= self.nbytes:
            return
        self.free()
        self.device = _cuda(self._cudart, self._cudart.cudaMalloc(nbytes), "cudaMalloc")
        self.host = _cuda(self._cudart, self._cudart.cudaMallocHost(nbytes), "cudaMallocHost")
        self.nbytes = nbytes

    def host_array(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        count = int(np.prod(shape))
        raw = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(self.host)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def free(self) -> None:
        if self.device:
            self._cudart.cudaFree(self.device)
        if self.host:
            self._cudart.cudaFreeHost(self.host)
        self.nbytes = self.device = self.host = 0


# ------------------------------------------------------------------------------ runner
class TensorRTRunner(Runner):
    """A deserialised TensorRT engine with its execution context, stream and buffers."""

    name = "tensorrt"

    def __init__(self, path: Path, info: PlanInfo | None = None, precision: str | None = None):
        super().__init__(path, precision or (info.precision if info else None) or "unknown")
        self.info = info
        self._cudart = None
        self._trt = None
        self._runtime = self._engine = self._context = self._stream = None
        self._buffers: dict[str, _Buffer] = {}
        self.min_batch = 1  # the engine profile's smallest batch (read on activate)

    def activate(self) -> None:
        if not self.path.is_file():
            raise MedfuseError("TensorRT engine not found", self.path)
        cudart = import_cudart()
        gpu = probe_gpu(cudart)  # before any TensorRT object exists
        if isinstance(gpu, str):
            raise MedfuseError(gpu, self.path)
        trt = import_tensorrt(prefer_lean=bool(self.info and self.info.version_compatible))
        problem = plan_problem(self.info, getattr(trt, "__version__", ""), gpu.compute_capability, gpu.name)
        if problem:
            raise MedfuseError(f"{problem}; rebuild it here with medfuse-export, or use --backend onnxruntime-cuda",
                               self.path)
        self._cudart, self._trt = cudart, trt
        self._load_engine(trt)
        self._stream = _cuda(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.metadata = self.info.metadata() if self.info else {}
        self.is_active = True

    def _load_engine(self, trt) -> None:
        plan = self.path.read_bytes()
        stale = stale_sidecar_problem(self.info, plan)
        if stale:
            raise MedfuseError(f"{stale}; rebuild it with medfuse-export", self.path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.info and self.info.version_compatible:
            self._runtime.engine_host_code_allowed = True  # a plan may carry its own lean runtime
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise MedfuseError("TensorRT could not deserialise this engine (another TensorRT version or GPU, or a "
                               "damaged file); rebuild it with medfuse-export", self.path)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        check_io(self.path, {n: tuple(engine.get_tensor_shape(n)) for n in names if is_input[n]},
                 {n: tuple(engine.get_tensor_shape(n)) for n in names if not is_input[n]})
        for n in (*self.input_names, *self.output_names):
            if engine.get_tensor_dtype(n) != trt.DataType.FLOAT:
                raise MedfuseError(f"tensor {n!r} is {engine.get_tensor_dtype(n)}; medfuse engines take and give "
                                   "float32", self.path)
        profile = engine.get_tensor_profile_shape(self.input_names[0], 0)  # (min, opt, max) shapes
        self.min_batch, self.max_batch = int(profile[0][0]), int(profile[2][0])
        self._engine = engine
        self._context = engine.create_execution_context()
        self._buffers = {n: _Buffer(self._cudart) for n in (*self.input_names, *self.output_names)}

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_feeds(feeds)
        batch = int(feeds[self.input_names[0]].shape[0])
        step = self.max_batch or batch
        if batch <= step:
            return self._infer_one(feeds)
        parts = [self._infer_one({n: feeds[n][i:i + step] for n in self.input_names}) for i in range(0, batch, step)]
        return {n: np.concatenate([p[n] for p in parts]) for n in self.output_names}

    def _infer_one(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = int(feeds[self.input_names[0]].shape[0])
        if batch < self.min_batch:  # under the profile's minimum (a last chunk, one pair): pad, then drop
            padded = {n: np.concatenate([feeds[n], np.zeros((self.min_batch - batch, *feeds[n].shape[1:]),
                                                            feeds[n].dtype)]) for n in self.input_names}
            return {n: out[:batch] for n, out in self._infer_profiled(padded).items()}
        return self._infer_profiled(feeds)

    def _infer_profiled(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, ctx = self._cudart, self._context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        arrays = {n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names}
        for name, array in arrays.items():
            if not ctx.set_input_shape(name, array.shape):
                raise MedfuseError(f"input {name} of shape {list(array.shape)} is outside the engine's optimization "
                                   "profile; rebuild it with a profile covering this batch and size", self.path)
        shapes = {n: tuple(ctx.get_tensor_shape(n)) for n in (*self.input_names, *self.output_names)}
        for name, shape in shapes.items():
            buf = self._buffers[name]
            buf.ensure(int(np.prod(shape)) * 4)
            ctx.set_tensor_address(name, buf.device)
        for name, array in arrays.items():
            buf = self._buffers[name]
            np.copyto(buf.host_array(array.shape), array)
            _cuda(cudart, cudart.cudaMemcpyAsync(buf.device, buf.host, array.nbytes, h2d, self._stream), "copy in")
        if not ctx.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.path}")
        out = {}
        for name in self.output_names:
            buf, nbytes = self._buffers[name], int(np.prod(shapes[name])) * 4
            _cuda(cudart, cudart.cudaMemcpyAsync(buf.host, buf.device, nbytes, d2h, self._stream), "copy out")
        _cuda(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        for name in self.output_names:
            out[name] = self._buffers[name].host_array(shapes[name]).copy()  # the pinned buffer is reused
        return out

    def close(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        self._buffers = {}
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
        # Release order matters to TensorRT: context, then engine, then runtime.
        self._context = self._engine = self._runtime = self._stream = None
        self.is_active = False
