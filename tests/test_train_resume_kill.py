"""A training process killed mid-epoch resumes from its last checkpoint and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from medfuse.runtime.phantom import write_phantom_dataset
from medfuse.train import cli
from medfuse.train.checkpoint import load_checkpoint

ARGS = ["--model-size", "tiny", "--input-size", "64", "--batch-size", "1", "--precision", "fp32", "--device", "cpu",
        "--val-fraction", "0.3", "--warmup-epochs", "1", "--freeze-encoder-epochs", "1", "--epochs", "3"]


@pytest.mark.slow
def test_kill_mid_epoch_then_resume(tmp_path):
    data = write_phantom_dataset(tmp_path / "d", n_cases=4, slices_per_case=4, size=64)  # 12 train steps/epoch
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "medfuse.train.cli", "finetune", "--data", str(data), "--out", str(out), *ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        seen = []
        for line in proc.stdout:  # the epoch-1 summary is printed after its checkpoint is written
            seen.append(line)
            if line.startswith("epoch   1/3"):
                break
        else:
            raise AssertionError("training ended before epoch 1:\n" + "".join(seen))
        # Kill at once: epoch 2 (12 steps, validation, checkpoint) has begun and is far from done. A
        # fixed sleep here raced a fast CI machine, which finished epoch 2 within 0.3 s.
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    # The kill may land inside epoch 2's checkpoint write: SIGKILL runs no cleanup, so its temporary
    # can be left beside last.pt, but last.pt itself is never half-written.
    saved = load_checkpoint(out / "last.pt")
    assert saved["epoch"] == 1

    (out / ".tmp-0123abcd-best.pt").write_bytes(b"half")  # as a kill inside a write leaves it, whatever the timing
    torch.set_num_threads(1)
    result = CliRunner().invoke(cli.app, ["finetune", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert "removed .tmp-0123abcd-best.pt" in result.output
    assert "after epoch 1" in result.output and "epoch   1/3" not in result.output and "epoch   2/3" in result.output
    assert not [p.name for p in out.iterdir() if p.name.startswith((".tmp-", ".old-"))]  # resume cleans up
    final = load_checkpoint(out / "last.pt")
    assert final["epoch"] == 3
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[0] == json.loads(json.dumps(saved["history"][0]))  # epoch 1 kept as it was
