"""Every way this machine can run the medfuse model, behind one callable, and why others are skipped.

An engine maps numpy ct [B,3,S,S] and mri [B,1,S,S] (float32, [0, 1]) to numpy fused [B,3,S,S]:
host arrays in and out, so every timed call includes the host-device copies on a GPU and ends
with the result on the host (a synchronisation point), the same for every backend.

Engines: the PyTorch reference from the checkpoint (eager fp32; bf16 + channels_last on a CPU,
fp16 + channels_last on CUDA), ONNX Runtime on each ONNX file of the artifact folder (fp32, fp16,
int8; CUDA execution provider where onnxruntime-gpu and a GPU are present), and the TensorRT plan.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.preprocess import PreprocessConfig

Run = Callable[[np.ndarray, np.ndarray], np.ndarray]
REFERENCE = "pytorch-fp32"


@dataclass
class Engine:
    name: str  # row label: pytorch-fp32, pytorch-bf16, onnxruntime-int8, tensorrt-fp16, ...
    precision: str  # fp32 | bf16 | fp16 | int8: selects the parity tolerance
    device: str  # cpu | cuda
    run: Run
    close: Callable[[], None] = lambda: None
    max_batch: int | None = None  # largest batch one call takes (TensorRT profile); None: any


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass
class EngineSet:
    """What `discover` found: engines to run, skipped ones with reasons, and the model's facts."""

    engines: list[Engine] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    flops_per_image: int | None = None  # multiply and add counted separately, at input_size
    model_config: dict | None = None
    threads: int | None = None  # intra-op threads given to PyTorch and ONNX Runtime on the CPU

    def get(self, name: str) -> Engine | None:
        return next((e for e in self.engines if e.name == name), None)

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise MedfuseError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if device == "cuda" and not _cuda_available():
        raise MedfuseError("--device cuda: no CUDA GPU is visible to PyTorch here")
    return device


# ---------------------------------------------------------------- PyTorch
def _torch_runner(model, device: str, dtype, channels_last: bool) -> Run:
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run(ct: np.ndarray, mri: np.ndarray) -> np.ndarray:
        a = torch.from_numpy(ct).to(device).contiguous(memory_format=fmt)
        b = torch.from_numpy(mri).to(device).contiguous(memory_format=fmt)
        with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            out = model(a, b)
        return out.float().cpu().numpy()  # .cpu() waits for the GPU stream: the timing is synchronised

    return run


def torch_engines(checkpoint: Path, device: str, threads: int | None, found: EngineSet) -> None:
    try:
        import torch

        from medfuse.train.checkpoint import load_model
        from medfuse.train.model import count_flops
    except ImportError as err:
        found.skipped.append(Skipped("pytorch-*", f"PyTorch is not installed ({err.name}): pip install 'medfuse[train]'"))
        return
    if threads:
        torch.set_num_threads(threads)
    model, mcfg, pcfg, _ = load_model(checkpoint, device)
    found.preprocess, found.model_config = pcfg, mcfg.to_dict()
    found.flops_per_image = int(count_flops(model, pcfg.input_size))
    found.engines.append(Engine(REFERENCE, "fp32", device, _torch_runner(model, device, None, False)))
    low = copy.deepcopy(model).to(memory_format=torch.channels_last)
    if device == "cpu":
        found.engines.append(Engine("pytorch-bf16", "bf16", device, _torch_runner(low, device, torch.bfloat16, True)))
    else:
        found.engines.append(Engine("pytorch-fp16", "fp16", device, _torch_runner(low, device, torch.float16, True)))


# ---------------------------------------------------------------- ONNX Runtime
def _runner_engine(name: str, precision: str, device: str, runner) -> Engine:
    runner.activate()

    def run(ct: np.ndarray, mri: np.ndarray) -> np.ndarray:
        return runner.infer({"ct": ct, "mri": mri})["fused"]

    return Engine(name, precision, device, run, runner.close, getattr(runner, "max_batch", None))


def onnx_engines(model_dir, device: str, threads: int | None, found: EngineSet) -> None:
    from medfuse.runtime.backends.onnxruntime_backend import CUDA_EP, OnnxRuntimeRunner, available_providers

    providers = available_providers()
    if not providers:
        found.skipped.append(Skipped("onnxruntime-*", "onnxruntime is not installed: pip install 'medfuse[cpu]'"))
        return
    ort_device = "cuda" if device == "cuda" and CUDA_EP in providers else "cpu"
    if device == "cuda" and ort_device == "cpu":
        found.skipped.append(Skipped("onnxruntime-cuda", "this onnxruntime has no CUDA execution provider "
                                     "(onnxruntime-gpu is not installed); ONNX rows run on the CPU"))
    for precision in ("fp32", "fp16", "int8"):
        path = model_dir.onnx.get(precision)
        if path is None:
            found.skipped.append(Skipped(f"onnxruntime-{precision}", f"no {precision} ONNX file in {model_dir.root}"))
            continue
        runner = OnnxRuntimeRunner(path, precision, device=ort_device, threads=threads)
        found.engines.append(_runner_engine(f"onnxruntime-{precision}", precision, ort_device, runner))


# ---------------------------------------------------------------- TensorRT
def tensorrt_engine(model_dir, device: str, found: EngineSet) -> None:
    name = "tensorrt-fp16"
    if model_dir.plan is None:
        found.skipped.append(Skipped(name, f"no model.plan in {model_dir.root} (built by medfuse-export on a GPU)"))
        return
    if device != "cuda":
        found.skipped.append(Skipped(name, "TensorRT needs a CUDA GPU; none is used here"))
        return
    from medfuse.runtime.backends.tensorrt_backend import PlanInfo, TensorRTRunner, installed_tensorrt

    if installed_tensorrt(lean_ok=True) is None:
        found.skipped.append(Skipped(name, "TensorRT is not installed: pip install 'medfuse[gpu]'"))
        return
    info = PlanInfo.from_sidecar(model_dir.plan_info, model_dir.plan) if model_dir.plan_info else None
    precision = (info.precision if info else None) or "fp16"
    try:
        engine = _runner_engine(f"tensorrt-{precision}", precision, "cuda", TensorRTRunner(model_dir.plan, info, precision))
    except MedfuseError as err:  # a plan built for another GPU or TensorRT version
        found.skipped.append(Skipped(f"tensorrt-{precision}", str(err)))
        return
    found.engines.append(engine)


# ---------------------------------------------------------------- all together
def _artifact_facts(model_dir, found: EngineSet) -> None:
    """Preprocessing and FLOPs from the artifact folder when there is no checkpoint."""
    from medfuse.runtime.model_dir import preprocess_config, read_onnx_metadata

    first = next(iter(model_dir.onnx.values()), None)
    metadata = read_onnx_metadata(first) if first else {}
    found.preprocess = preprocess_config(metadata, model_dir, first or model_dir.root)
    text = metadata.get("medfuse.model_config")
    cfg = json.loads(text) if text else (model_dir.manifest or {}).get("model_config")
    found.model_config = cfg
    try:
        from medfuse.train.config import ModelConfig
        from medfuse.train.model import build_model, count_flops
    except ImportError:
        return  # FLOPs need torch; GFLOP/s stays blank
    if cfg:
        found.flops_per_image = int(count_flops(build_model(ModelConfig.from_dict(cfg)), found.preprocess.input_size))


def discover(checkpoint: Path | None, artifacts: Path | None, device: str = "auto",
             threads: int | None = None, only: tuple[str, ...] = ()) -> EngineSet:
    """Open every engine that can run here; `only` keeps the names given (all when empty)."""
    from medfuse.runtime.backends.onnxruntime_backend import physical_cores

    device = resolve_device(device)
    found = EngineSet(threads=threads or physical_cores())
    if checkpoint is not None:
        torch_engines(Path(checkpoint), device, found.threads, found)
    else:
        found.skipped.append(Skipped("pytorch-*", "no --checkpoint given (the PyTorch reference needs it)"))
    if artifacts is not None:
        from medfuse.runtime.model_dir import open_model_dir

        model_dir = open_model_dir(Path(artifacts))
        if checkpoint is None:
            _artifact_facts(model_dir, found)
        onnx_engines(model_dir, device, found.threads, found)
        tensorrt_engine(model_dir, device, found)
    else:
        found.skipped.append(Skipped("onnxruntime-*, tensorrt-*", "no --artifacts folder given (medfuse-export writes it)"))
    if only:
        unknown = set(only) - {e.name for e in found.engines}
        if unknown:
            found.close()
            raise MedfuseError(f"--engine {', '.join(sorted(unknown))} is not available here; available: "
                               f"{', '.join(e.name for e in found.engines) or 'none'}")
        found.engines = [e for e in found.engines if e.name in only]
    return found


def run_batched(engine: Engine, ct: np.ndarray, mri: np.ndarray, chunk: int = 4) -> np.ndarray:
    """Outputs for a whole stack, `chunk` pairs per call (bounded by the engine's max batch)."""
    step = min(chunk, engine.max_batch or chunk)
    return np.concatenate([engine.run(ct[i:i + step], mri[i:i + step]) for i in range(0, len(ct), step)])
