"""Helpers for the export tests: a tiny random-init checkpoint at a small input size."""

from __future__ import annotations

from pathlib import Path

_EXPORTS: dict[Path, dict] = {}

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


def tiny_export(base: Path) -> dict:
    """One tiny checkpoint and its fp32 ONNX per test session (the dynamo export with symbolic
    H/W is the slow step, ~10-30 s on a shared CPU), shared by the export test modules.

    `base` is the session's tmp_path_factory.getbasetemp(). Returns model, configs, sha256, the
    ONNX path (in its own folder), whether H/W are dynamic, and the precision-free metadata.
    """
    if base not in _EXPORTS:
        from medfuse.export import metadata as meta
        from medfuse.export.onnx_export import export_model, save_checked
        from medfuse.train.checkpoint import load_model

        folder = base / "tiny-export"
        folder.mkdir()
        checkpoint = make_tiny_checkpoint(folder / "tiny.pt")
        model, model_cfg, pre_cfg, sha = load_model(checkpoint)
        proto, dynamic = export_model(model, pre_cfg.input_size)
        metadata = meta.build_metadata(model_cfg.to_dict(), pre_cfg.to_dict(), sha)
        path = save_checked(proto, folder / "artifacts" / "model.onnx", meta.with_precision(metadata, "fp32"))
        _EXPORTS[base] = {"model": model, "model_cfg": model_cfg, "pre_cfg": pre_cfg, "sha": sha, "path": path,
                          "dynamic": dynamic, "metadata": metadata, "checkpoint": checkpoint}
    return _EXPORTS[base]
