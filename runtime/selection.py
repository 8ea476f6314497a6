"""Which backend and precision run the model: `--backend` and `--precision`.

`choose` is a pure function of what the model folder holds and what this machine offers
(`Available`), so every rule is unit-tested without a GPU; `probe` fills `Available` in.

auto picks the fastest that can run here: the TensorRT engine, then ONNX Runtime on CUDA (fp16
ONNX when present), then ONNX Runtime on the CPU (the int8 ONNX when present, since fp16 is slow
on CPUs). `onnxruntime-tensorrt` (ONNX Runtime's TensorRT provider) is never picked by auto: it
builds engines at first use, which takes minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medfuse.runtime.backends.onnxruntime_backend import CPU_EP, CUDA_EP, TENSORRT_EP
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.model_dir import ONNX_FILES, ModelDir

BACKENDS = ("auto", "tensorrt", "onnxruntime-cuda", "onnxruntime-cpu", "onnxruntime-tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
ORT_BACKEND_EP = {"onnxruntime-cuda": CUDA_EP, "onnxruntime-cpu": CPU_EP, "onnxruntime-tensorrt": TENSORRT_EP}
GPU_HINT = "pip install 'medfuse[gpu]' (onnxruntime-gpu)"
EXPORT_FLAGS = {"fp16": "--fp16", "int8": "--int8 --calib DIR", "fp32": ""}


@dataclass(frozen=True)
class Available:
    """What can run: the model folder's artifacts and this machine's libraries and GPU."""

    onnx: dict[str, str] = field(default_factory=dict)  # precision -> ONNX file name, fp32/fp16/int8 order
    plan_precision: str | None = None  # the engine's precision; None when there is no model.plan
    has_plan: bool = False
    plan_problem: str | None = None  # why the engine cannot run here (no tensorrt, no GPU, other GPU)
    ort_providers: tuple[str, ...] = ()  # onnxruntime's execution providers; () when not installed


@dataclass(frozen=True)
class Choice:
    backend: str  # tensorrt | onnxruntime-cuda | onnxruntime-cpu | onnxruntime-tensorrt
    precision: str
    artifact: str  # file name in the model folder
    reason: str  # one line for the user: why this one

    def describe(self) -> str:
        return f"{self.backend} {self.precision} ({self.artifact}): {self.reason}"


def _check_names(backend: str, precision: str) -> None:
    if backend not in BACKENDS:
        raise MedfuseError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise MedfuseError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def _missing_onnx(precision: str) -> MedfuseError:
    command = " ".join(["medfuse-export CHECKPOINT -o DIR", EXPORT_FLAGS[precision]]).strip()
    return MedfuseError(f"--precision {precision} needs {ONNX_FILES[precision]} in the model folder; "
                        f"export it with `{command}`")


def _tensorrt(precision: str, av: Available) -> Choice:
    if not av.has_plan:
        raise MedfuseError("--backend tensorrt needs model.plan in the model folder; build it with "
                           "`medfuse-export CHECKPOINT -o DIR --fp16` on a machine with an NVIDIA GPU and tensorrt")
    if av.plan_problem:
        raise MedfuseError(f"--backend tensorrt cannot run model.plan: {av.plan_problem}")
    if precision not in ("auto", av.plan_precision) and av.plan_precision:
        raise MedfuseError(f"--precision {precision}: model.plan is a {av.plan_precision} engine; "
                           f"use --precision {av.plan_precision} or auto, or another backend")
    return Choice("tensorrt", av.plan_precision or "unknown", "model.plan", "TensorRT engine built for this GPU")


def _ort(backend: str, precision: str, av: Available, why: str = "") -> Choice:
    ep = ORT_BACKEND_EP[backend]
    if not av.ort_providers:
        raise MedfuseError(f"--backend {backend} needs onnxruntime, which is not installed: "
                           f"pip install 'medfuse[cpu]' or 'medfuse[gpu]'")
    if ep not in av.ort_providers:
        raise MedfuseError(f"--backend {backend} needs onnxruntime's {ep}, which the installed onnxruntime lacks "
                           f"(it offers {', '.join(av.ort_providers)}): {GPU_HINT}")
    if not av.onnx:
        raise MedfuseError(f"--backend {backend} needs an ONNX model (model.onnx) in the model folder")
    if precision == "int8" and backend == "onnxruntime-tensorrt":
        # medfuse's int8 file is uint8 asymmetric QDQ (for CPUs); TensorRT takes symmetric int8 only
        raise MedfuseError("--precision int8 is a CPU variant (asymmetric uint8 QDQ) that TensorRT cannot run; "
                           "use fp16 or fp32 with --backend onnxruntime-tensorrt")
    if precision == "auto":
        precision, note = _auto_ort_precision(backend, av)
    elif precision not in av.onnx:
        raise _missing_onnx(precision)
    else:
        slow = backend == "onnxruntime-cpu" and precision == "fp16"
        note = "as asked" + ("; fp16 runs slowly on CPUs" if slow else "")
    reason = "; ".join(part for part in (why, note) if part)
    return Choice(backend, precision, av.onnx[precision], reason)


def _auto_ort_precision(backend: str, av: Available) -> tuple[str, str]:
    preferred = ("int8", "fp32") if backend == "onnxruntime-cpu" else ("fp16", "fp32")
    for precision in preferred:
        if precision in av.onnx:
            why = {"int8": "int8 is the fastest CPU variant", "fp16": "fp16 is the fastest GPU variant",
                   "fp32": "no faster variant in the model folder"}[precision]
            return precision, why
    return next(iter(av.onnx)), "the only variant in the model folder"


def _why_not_tensorrt(precision: str, av: Available) -> str:
    if not av.has_plan:
        return "no TensorRT engine in the model folder"
    if av.plan_problem:
        return f"TensorRT engine skipped: {av.plan_problem}"
    return f"TensorRT engine is {av.plan_precision}, not {precision}"


def choose(backend: str, precision: str, av: Available) -> Choice:
    """The backend, precision and artifact to run, and why; a MedfuseError naming what is missing."""
    _check_names(backend, precision)
    if backend == "tensorrt":
        return _tensorrt(precision, av)
    if backend != "auto":
        return _ort(backend, precision, av)
    if av.has_plan and not av.plan_problem and precision in ("auto", av.plan_precision):
        return Choice("tensorrt", av.plan_precision or "unknown", "model.plan",
                      "auto: a TensorRT engine built for this GPU is the fastest")
    why_not = _why_not_tensorrt(precision, av)
    if CUDA_EP in av.ort_providers and av.onnx:
        return _ort("onnxruntime-cuda", precision, av, f"auto: {why_not}")
    if not av.onnx:
        raise MedfuseError(f"nothing in the model folder can run here: {why_not}, and there is no ONNX model")
    if not av.ort_providers:
        raise MedfuseError(f"nothing can run the model here: {why_not}, and onnxruntime is not installed "
                           "(pip install 'medfuse[cpu]')")
    return _ort("onnxruntime-cpu", precision, av, f"auto: {why_not}; onnxruntime has no CUDA provider here")


# ------------------------------------------------------------------------------ the impure side
def probe(model: ModelDir) -> Available:
    """Fill `Available` for a model folder on this machine (imports onnxruntime; asks the driver)."""
    from medfuse.runtime.backends.onnxruntime_backend import available_providers

    plan_precision, problem = None, None
    if model.plan is not None:
        info = _plan_info(model)
        plan_precision = info.precision if info else None
        problem = _plan_problem(info)
    onnx = {p: model.onnx[p].name for p in ("fp32", "fp16", "int8") if p in model.onnx}
    return Available(onnx, plan_precision, model.plan is not None, problem, available_providers())


def _plan_info(model: ModelDir):
    from medfuse.runtime.backends.tensorrt_backend import PlanInfo

    return PlanInfo.from_sidecar(model.plan_info, model.plan) if model.plan_info is not None else None


def _plan_problem(info) -> str | None:
    from medfuse.runtime.backends import tensorrt_backend as trt_backend

    found = trt_backend.installed_tensorrt(lean_ok=bool(info and info.version_compatible))
    if found is None:
        return f"the tensorrt package is not installed ({trt_backend.INSTALL_HINT})"
    gpu = trt_backend.probe_gpu()
    if isinstance(gpu, str):
        return gpu
    return trt_backend.plan_problem(info, found[1] or "", gpu.compute_capability, gpu.name)


def make_runner(choice: Choice, model: ModelDir, spin: bool = True, threads: int | None = None):
    """The (not yet activated) runner for a choice; spin=False when host threads work beside it;
    `threads`: ONNX Runtime's intra-op threads (None: physical cores; TensorRT has none)."""
    if choice.backend == "tensorrt":
        from medfuse.runtime.backends.tensorrt_backend import TensorRTRunner

        return TensorRTRunner(model.plan, _plan_info(model), choice.precision)
    from medfuse.runtime.backends.onnxruntime_backend import OnnxRuntimeRunner

    device = {"onnxruntime-cpu": "cpu", "onnxruntime-cuda": "cuda", "onnxruntime-tensorrt": "tensorrt"}[choice.backend]
    return OnnxRuntimeRunner(Path(model.onnx[choice.precision]), choice.precision, device, threads=threads,
                             spin=spin)
