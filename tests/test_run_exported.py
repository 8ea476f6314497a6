"""The README path on a real model: checkpoint -> medfuse-export -> medfuse-run -> fused PNG.

A tiny FusionNet is exported by the export command itself; medfuse-run's PNG must equal the
PyTorch model's output on the same preprocessed pair, to one grey level (ONNX Runtime rounding).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from medfuse.runtime import io
from medfuse.runtime.preprocess import PreprocessConfig, prepare_pair, to_uint8_image

torch = pytest.importorskip("torch", reason="exporting a model needs the [train,export] extras")
pytest.importorskip("onnx", reason="exporting a model needs the [export] extra")

INPUT_SIZE = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    from medfuse.train.checkpoint import save_checkpoint
    from medfuse.train.config import ModelConfig
    from medfuse.train.model import build_model

    root = tmp_path_factory.mktemp("exported")
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    ckpt = save_checkpoint(root / "tiny.pt", {
        "model_config": cfg.to_dict(), "preprocess_config": PreprocessConfig(input_size=INPUT_SIZE).to_dict(),
        "train_config": {}, "model_state": build_model(cfg).state_dict(), "epoch": 0, "modality_pair": "ct-mri"})
    done = subprocess.run([sys.executable, "-c", "from medfuse.export.cli import main; main()", str(ckpt),
                           "-o", str(root / "artifacts"), "--engine", "skip"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return ckpt, root / "artifacts"


@pytest.mark.slow
def test_medfuse_run_on_an_exported_model_matches_pytorch(tmp_path, exported, phantom_dir):
    from medfuse.runtime.run import Request, execute
    from medfuse.train.checkpoint import load_model

    ckpt, artifacts = exported
    ct, mri = phantom_dir / "CT" / "02001.png", phantom_dir / "MRI" / "02001.png"
    out = tmp_path / "fused.png"
    summary = execute(Request(ct=ct, mri=mri, output=out, model=artifacts))
    assert summary["counts"]["ok"] == 1 and summary["artifact"] == "model.onnx"

    model, _, pre, _ = load_model(ckpt)
    prepared = prepare_pair(io.read_image(ct), io.read_image(mri), pre)
    with torch.inference_mode():
        ref = model(torch.from_numpy(prepared.ct[None]), torch.from_numpy(prepared.mri[None]))[0].numpy()
    expected = to_uint8_image(ref, prepared.geometry)
    got = cv2.cvtColor(cv2.imread(str(out), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
