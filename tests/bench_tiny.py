"""A tiny medfuse model for the benchmark tests: checkpoint + artifact folder (fp32/fp16/int8 ONNX).

Built once per test session through medfuse-export's own pipeline (no TensorRT engine), so the
benchmarks run against the real artifact folder a user gets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

INPUT_SIZE = 64  # phantoms (256 px) are letterboxed down to this: fast on a shared 2-core CPU


@dataclass(frozen=True)
class Tiny:
    checkpoint: Path
    artifacts: Path


@functools.lru_cache(maxsize=None)
def build(root: Path) -> Tiny:
    import torch

    from medfuse.export.pipeline import ExportRequest, run_export
    from medfuse.runtime.phantom import write_phantom_dataset
    from medfuse.runtime.preprocess import PreprocessConfig
    from medfuse.train.checkpoint import save_checkpoint
    from medfuse.train.config import ModelConfig
    from medfuse.train.model import build_model

    torch.manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    cfg, pre = ModelConfig.tiny(), PreprocessConfig(input_size=INPUT_SIZE)
    ckpt = save_checkpoint(root / "tiny.pt", {
        "model_config": cfg.to_dict(), "preprocess_config": pre.to_dict(), "train_config": {},
        "model_state": build_model(cfg).state_dict(), "epoch": 0, "modality_pair": "ct-mri"})
    calib = write_phantom_dataset(root / "calib", n_cases=1, slices_per_case=2, size=INPUT_SIZE)
    run_export(ExportRequest(ckpt, root / "art", fp16=True, int8=True, calib_dir=calib, calib_pairs=2,
                             parity_pairs=1, engine="skip"))
    return Tiny(ckpt, root / "art")
