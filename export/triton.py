"""A Triton Inference Server model repository from the exported artifacts.

    REPO/medfuse_onnx/config.pbtxt   platform onnxruntime_onnx
    REPO/medfuse_onnx/1/model.onnx
    REPO/medfuse_trt/config.pbtxt    platform tensorrt_plan (only when an engine was built)
    REPO/medfuse_trt/1/model.plan

With max_batch_size > 0 Triton owns the batch axis, so the dims below leave it out. H and W are
fixed at the preprocessing input size: the runtime letterboxes every pair to it, and the engine's
profile is built for it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from medfuse.runtime.atomic import atomic_output, discard

ONNX_MODEL = "medfuse_onnx"
TRT_MODEL = "medfuse_trt"
QUEUE_DELAY_US = 2000  # how long Triton may hold a request to batch it with others


@dataclass(frozen=True)
class TritonModel:
    name: str
    platform: str  # Triton backend platform string
    filename: str  # the file Triton looks for in version folder 1
    instance_kind: str  # KIND_GPU for an engine; KIND_AUTO lets ONNX Runtime use a GPU when present


def preferred_batches(max_batch: int) -> list[int]:
    return [b for b in (4, 8, 16, 32) if b <= max_batch] or [max_batch]


def _tensor(name: str, channels: int, size: int) -> str:
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: [ {channels}, {size}, {size} ]\n  }}'


def config_text(model: TritonModel, *, max_batch: int, input_size: int, instances: int = 1) -> str:
    inputs = ",\n".join(_tensor(name, ch, input_size) for name, ch in (("ct", 3), ("mri", 1)))
    preferred = ", ".join(str(b) for b in preferred_batches(max_batch))
    return (
        f'name: "{model.name}"\n'
        f'platform: "{model.platform}"\n'
        f"max_batch_size: {max_batch}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{_tensor('fused', 3, input_size)}\n]\n"
        f"dynamic_batching {{\n  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}\n"
        f"instance_group [\n  {{\n    count: {instances}\n    kind: {model.instance_kind}\n  }}\n]\n"
    )


MODELS = {
    "onnx": TritonModel(ONNX_MODEL, "onnxruntime_onnx", "model.onnx", "KIND_AUTO"),
    "plan": TritonModel(TRT_MODEL, "tensorrt_plan", "model.plan", "KIND_GPU"),
}


def write_model(repo: Path, model: TritonModel, artifact: Path, *, max_batch: int, input_size: int) -> Path:
    """Write one model folder atomically (a re-export replaces the old folder whole)."""
    with atomic_output(repo / model.name) as tmp:
        (tmp / "1").mkdir(parents=True)
        shutil.copyfile(artifact, tmp / "1" / model.filename)
        (tmp / "config.pbtxt").write_text(config_text(model, max_batch=max_batch, input_size=input_size))
    return repo / model.name


def write_repository(repo: str | Path, *, onnx_path: Path, plan_path: Path | None, max_batch: int,
                     input_size: int) -> list[Path]:
    repo = Path(repo)
    written = [write_model(repo, MODELS["onnx"], onnx_path, max_batch=max_batch, input_size=input_size)]
    if plan_path is not None:
        written.append(write_model(repo, MODELS["plan"], plan_path, max_batch=max_batch, input_size=input_size))
    elif (repo / TRT_MODEL).is_dir():
        # An engine of an earlier export would be served beside this export's ONNX model.
        discard(repo / TRT_MODEL)
    return written
