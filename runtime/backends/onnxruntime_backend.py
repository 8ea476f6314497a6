"""ONNX Runtime runner: CPU, CUDA and (explicitly asked for) TensorRT execution providers.

onnxruntime is imported in `activate`, so this module costs nothing to import. The session is set
for latency: full graph optimisation, one intra-op thread per physical core of this process's CPU
set (hyper-threads slow convolutions down). On a GPU the inputs and output go through I/O binding,
so ONNX Runtime copies each batch once and does not allocate per call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medfuse.runtime.backends.base import Runner, check_io
from medfuse.runtime.errors import MedfuseError

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"

# device -> execution providers, most preferred first (ONNX Runtime falls back along the list).
DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": (CPU_EP,),
    "cuda": (CUDA_EP, CPU_EP),
    "tensorrt": (TENSORRT_EP, CUDA_EP, CPU_EP),
}
ONNX_FLOAT = "tensor(float)"


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (Linux sysfs; else the CPU count)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def available_providers() -> tuple[str, ...]:
    """Execution providers of the installed onnxruntime; () when onnxruntime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())


def _default_trt_cache() -> Path:
    """One engine cache per ONNX Runtime version: its engines must be rebuilt when ONNX Runtime or
    TensorRT changes (ONNX Runtime's TensorRT provider docs); a new folder does that."""
    try:
        import onnxruntime as ort

        version = ort.__version__
    except ImportError:
        version = "unknown"
    return Path.home() / ".cache" / "medfuse" / f"ort-tensorrt-{version}"


def provider_options(device: str, precision: str, cache_dir: Path | None) -> list:
    """The `providers` argument of InferenceSession for a device."""
    out: list = []
    for ep in DEVICE_PROVIDERS[device]:
        if ep == TENSORRT_EP:
            cache = cache_dir or _default_trt_cache()
            # Building engines takes minutes: the caches make it a one-time cost per model and shape.
            out.append((ep, {"trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": True,
                             "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                             "trt_timing_cache_path": str(cache)}))
        else:
            out.append(ep)
    return out


class OnnxRuntimeRunner(Runner):
    """An ONNX model in an onnxruntime InferenceSession."""

    def __init__(self, path: Path, precision: str = "fp32", device: str = "cpu",
                 threads: int | None = None, cache_dir: Path | None = None, spin: bool = True):
        super().__init__(path, precision)
        if device not in DEVICE_PROVIDERS:
            raise ValueError(f"device must be one of {sorted(DEVICE_PROVIDERS)}, got {device!r}")
        self.device = device
        self.name = "onnxruntime-cpu" if device == "cpu" else f"onnxruntime-{device}"
        self.threads = threads or physical_cores()
        self.cache_dir = cache_dir
        # Idle intra-op threads spin for the next op by default: lowest latency for one call, but
        # they take the cores that decoding and writing need when those overlap with inference.
        self.spin = spin
        self._session = None

    def _session_options(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
        if not self.spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    def activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MedfuseError("onnxruntime is not installed: pip install 'medfuse[cpu]' "
                               "(or 'medfuse[gpu]' for onnxruntime-gpu)") from None
        if not self.path.is_file():
            raise MedfuseError("ONNX model not found", self.path)
        try:
            session = ort.InferenceSession(str(self.path), self._session_options(),
                                           providers=provider_options(self.device, self.precision, self.cache_dir))
        except Exception as err:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
            raise MedfuseError(f"onnxruntime cannot load this model: {str(err).strip().splitlines()[0]}",
                               self.path) from None
        self._check_session(session)
        self._session = session
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        self.is_active = True

    def _check_session(self, session) -> None:
        check_io(self.path, {i.name: i.shape for i in session.get_inputs()},
                 {o.name: o.shape for o in session.get_outputs()})
        for tensor in [*session.get_inputs(), *session.get_outputs()]:
            if tensor.name in (*self.input_names, *self.output_names) and tensor.type != ONNX_FLOAT:
                raise MedfuseError(f"tensor {tensor.name!r} is {tensor.type}; medfuse models take and give "
                                   f"float32 ({ONNX_FLOAT}) in every precision", self.path)
        wanted = DEVICE_PROVIDERS[self.device][0]
        if wanted not in session.get_providers():
            raise MedfuseError(f"onnxruntime could not start {wanted} (it fell back to "
                               f"{', '.join(session.get_providers())}); check the CUDA/cuDNN libraries "
                               "onnxruntime-gpu needs, or choose --backend onnxruntime-cpu", self.path)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_feeds(feeds)
        arrays = {n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names}
        if self.device == "cpu":
            values = self._session.run(list(self.output_names), arrays)
        else:
            values = self._run_bound(arrays)
        return dict(zip(self.output_names, values))

    def _run_bound(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        binding = self._session.io_binding()
        for name, array in arrays.items():
            binding.bind_cpu_input(name, array)
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)  # ONNX Runtime allocates on the GPU, copied back once
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def close(self) -> None:
        self._session = None
        self.is_active = False
