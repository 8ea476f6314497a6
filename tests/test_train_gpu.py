"""CUDA training path: fp16 autocast with a GradScaler, channels_last, checkpoint and resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from medfuse.train import cli
from medfuse.train.checkpoint import load_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")]

ARGS = ["--model-size", "tiny", "--input-size", "64", "--batch-size", "2", "--device", "cuda",
        "--val-fraction", "0.3", "--warmup-epochs", "1", "--freeze-encoder-epochs", "1", "--checkpoint-every", "1"]


def invoke(*args) -> str:
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp32"])
def test_cuda_run_then_resume(phantom_dir, tmp_path, precision):
    out = tmp_path / "out"
    output = invoke("finetune", "--data", phantom_dir, "--out", out, "--epochs", "2", "--precision", precision, *ARGS)
    expected = "fp16" if precision == "auto" else precision
    history = json.loads((out / "history.json").read_text())
    assert history["device"] == "cuda:0" and history["precision"] == expected and history["channels_last"]
    assert f"training on cuda:0 ({expected}, channels_last)" in output
    final = load_checkpoint(out / "last.pt")
    assert ("scale" in final["scaler_state"]) == (expected == "fp16")  # the GradScaler only for fp16
    assert all(torch.isfinite(v).all() for v in final["model_state"].values() if v.is_floating_point())

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copyfile(out / "epoch_001.pt", resumed / "last.pt")
    assert "after epoch 1" in invoke("finetune", "--resume", resumed)
    again = load_checkpoint(resumed / "last.pt")
    assert again["epoch"] == 2
    for key, value in final["model_state"].items():  # cuDNN may pick other kernels: close, not bitwise
        if value.is_floating_point():
            torch.testing.assert_close(again["model_state"][key], value, atol=1e-3, rtol=1e-3, msg=key)
