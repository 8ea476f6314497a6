"""ONNX -> TensorRT engine (`model.plan`) with a JSON sidecar, through the TensorRT 10/11 Python API.

The engine is built from a strongly typed network: precision comes from the ONNX file
(`model.fp16.onnx` gives an fp16 engine), as TensorRT 11 requires (it removed BuilderFlag.FP16);
on 10.x the STRONGLY_TYPED creation flag gives the same behaviour. The `.plan` is TensorRT's own
bytes, no header; what a loader needs to know is in `model.plan.json`.

GPU presence is checked with cuda-python before any TensorRT object exists: on a machine without
a driver, creating a Builder can abort the process instead of raising.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from medfuse import __version__
from medfuse.runtime.atomic import atomic_output
from medfuse.runtime.checksum import sha256_file
from medfuse.runtime.errors import MedfuseError

ENGINE_NEEDS = "the TensorRT engine needs an NVIDIA GPU with the `tensorrt` and `cuda-python` packages (pip install 'medfuse[gpu]')"
WORKSPACE_BYTES = 2 << 30  # builder scratch memory; more lets TensorRT time more tactics
INPUT_CHANNELS = {"ct": 3, "mri": 1}


@dataclass(frozen=True)
class BatchProfile:
    """Batch sizes of the engine's one optimisation profile."""

    min: int
    opt: int  # the size TensorRT tunes kernels for
    max: int

    @classmethod
    def parse(cls, text: str) -> BatchProfile:
        """'1,4,32' -> min 1, opt 4, max 32; a single number fixes all three."""
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            raise MedfuseError(f"--batch takes MIN,OPT,MAX integers such as 1,4,32, got {text!r}") from None
        if len(values) == 1:
            values *= 3
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise MedfuseError(f"--batch needs 1 <= MIN <= OPT <= MAX as MIN,OPT,MAX, got {text!r}")
        return cls(*values)

    def shapes(self, input_size: int) -> dict[str, dict[str, list[int]]]:
        """Per input: the min/opt/max shapes of the profile, H and W fixed at the input size."""
        return {name: {key: [batch, ch, input_size, input_size]
                       for key, batch in (("min", self.min), ("opt", self.opt), ("max", self.max))}
                for name, ch in INPUT_CHANNELS.items()}


@dataclass(frozen=True)
class EngineOptions:
    batch: BatchProfile
    input_size: int
    timing_cache: Path  # reused across builds: later builds skip kernel timing already done
    version_compatible: bool = False  # runs on this and later TensorRT versions, and on tensorrt-lean
    # With version_compatible the plan embeds TensorRT's lean runtime, which is what lets a *later*
    # TensorRT run it (engine_host_code_allowed). Excluding it makes the plan smaller but then only
    # the tensorrt-lean package of the building version can run it.
    exclude_lean_runtime: bool = False
    hardware_compat: bool = False  # Ampere-and-newer compatible instead of this GPU's architecture only
    workspace_bytes: int = WORKSPACE_BYTES


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.9"


def detect_gpu() -> GpuInfo | str:
    """The first CUDA device, or a one-line reason there is none usable. Creates no TensorRT object."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return f"cuda-python is not installed; {ENGINE_NEEDS}"
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        return f"no CUDA device found ({getattr(err, 'name', err)}); {ENGINE_NEEDS}"
    err, props = cudart.cudaGetDeviceProperties(0)
    if err != cudart.cudaError_t.cudaSuccess:
        return f"cannot read CUDA device 0 ({getattr(err, 'name', err)}); {ENGINE_NEEDS}"
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name, f"{props.major}.{props.minor}")


def engine_unavailable() -> str | None:
    """None when an engine can be built here, else the reason (GPU checked before importing TensorRT)."""
    gpu = detect_gpu()
    if isinstance(gpu, str):
        return gpu
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return f"the tensorrt package is not installed; {ENGINE_NEEDS}"
    return None


def network_flags(trt) -> int:
    """STRONGLY_TYPED on 10.x; 0 on 11.x where strong typing is always on (the flag is deprecated)."""
    if int(trt.__version__.split(".")[0]) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def sidecar(*, trt_version: str, gpu: GpuInfo, precision: str, options: EngineOptions, onnx_sha256: str,
            preprocess_config: dict, plan_sha256: str, metadata: dict[str, str]) -> dict:
    """model.plan.json: what a loader checks before deserialising (version, GPU) and what it needs after."""
    return {
        "format": "medfuse-tensorrt-plan",
        "medfuse_version": __version__,
        "tensorrt_version": trt_version,
        "gpu_name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "precision": precision,
        "inputs": list(INPUT_CHANNELS),
        "outputs": ["fused"],
        "profile": {"batch": asdict(options.batch), "shapes": options.batch.shapes(options.input_size)},
        "version_compatible": options.version_compatible,
        "exclude_lean_runtime": options.version_compatible and options.exclude_lean_runtime,
        "hardware_compatibility": "ampere_plus" if options.hardware_compat else "none",
        "source_onnx_sha256": onnx_sha256,
        "plan_sha256": plan_sha256,
        "preprocess_config": preprocess_config,
        "metadata": metadata,  # the medfuse.* keys of the source ONNX file
    }


def _parse(trt, builder, logger, onnx_path: Path):
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise MedfuseError(f"TensorRT could not parse the ONNX file: {errors}", onnx_path)
    return network, parser


def _config(trt, builder, options: EngineOptions):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    profile = builder.create_optimization_profile()
    for name, shapes in options.batch.shapes(options.input_size).items():
        profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if options.exclude_lean_runtime:
            config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
    if options.hardware_compat:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    return config


def _load_timing_cache(config, path: Path):
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    # ignore_mismatch=False: a cache from another TensorRT or GPU (the default path is shared by
    # every machine with this home folder) is refused, returning False; start a fresh one then.
    if not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _save_timing_cache(config, path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is not None:  # the engine is built either way: a cache is only a speed-up
        with atomic_output(path) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))


def _check_hardware_compat(options: EngineOptions, gpu: GpuInfo) -> None:
    major = int(str(gpu.compute_capability).split(".")[0] or 0)
    if options.hardware_compat and major < 8:
        raise MedfuseError(f"--hardware-compat builds Ampere-or-newer engines, which needs an Ampere or newer GPU to "
                           f"build on; this one ({gpu.name}) has compute capability {gpu.compute_capability}")


def build_engine(onnx_path: str | Path, plan_path: str | Path, options: EngineOptions, *, precision: str,
                 preprocess_config: dict, metadata: dict[str, str]) -> dict:
    """Build and write `plan_path` and `plan_path.json`; returns the sidecar dict."""
    gpu = detect_gpu()
    if isinstance(gpu, str):
        raise MedfuseError(gpu)
    _check_hardware_compat(options, gpu)
    import tensorrt as trt

    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path)
    config = _config(trt, builder, options)
    _load_timing_cache(config, options.timing_cache)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise MedfuseError("TensorRT failed to build the engine (see the TensorRT messages above)", onnx_path)
    with atomic_output(plan_path) as tmp:
        tmp.write_bytes(bytes(plan))
    _save_timing_cache(config, options.timing_cache)
    meta = sidecar(trt_version=trt.__version__, gpu=gpu, precision=precision, options=options,
                   onnx_sha256=sha256_file(onnx_path), preprocess_config=preprocess_config,
                   plan_sha256=sha256_file(plan_path), metadata=metadata)
    with atomic_output(plan_path.with_name(plan_path.name + ".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta
