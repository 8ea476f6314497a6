"""Helpers for the export tests: a tiny random-init checkpoint at a small input size."""

from __future__ import annotations

from pathlib import Path

TINY_SIZE = 64  # model input side for export tests: a multiple of 32, fast on one CPU core


def make_tiny_checkpoint(path: Path, input_size: int = TINY_SIZE, seed: int = 0) -> Path:
    import torch

    from medfuse.runtime.preprocess import PreprocessConfig
    from medfuse.train.checkpoint import save_checkpoint
    from medfuse.train.config import ModelConfig
    from medfuse.train.model import build_model

    torch.manual_seed(seed)
    cfg = ModelConfig.tiny()
    model = build_model(cfg)
    return save_checkpoint(path, {
        "model_config": cfg.to_dict(),
        "preprocess_config": PreprocessConfig(input_size=input_size).to_dict(),
        "model_state": model.state_dict(),
        "modality_pair": "ct-mri",
    })


def random_pair(batch: int, height: int = TINY_SIZE, width: int = TINY_SIZE, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.random((batch, 3, height, width), dtype=np.float32),
            rng.random((batch, 1, height, width), dtype=np.float32))
