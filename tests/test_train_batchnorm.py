"""BatchNorm statistics fixed for the last epochs: exact re-estimation, frozen statistics while the
weights still train, exact resume inside the frozen phase."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from train_support import invoke_train
from medfuse.train import cli
from medfuse.train.batchnorm import batchnorm_layers, recalibrate_batchnorm, set_batchnorm_eval
from medfuse.train.checkpoint import load_checkpoint

TINY = ["--model-size", "tiny", "--input-size", "64", "--batch-size", "2", "--precision", "fp32", "--device", "cpu",
        "--val-fraction", "0.3", "--warmup-epochs", "0", "--freeze-encoder-epochs", "0", "--lr", "1e-3",
        "--set", "augment.crop_size=32"]


def bn_stats(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_recalibration_is_the_plain_average_of_batch_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3))
    batches = [torch.randn(4, 1, 5, 5) * (i + 1) + i for i in range(3)]  # very different batches
    count = recalibrate_batchnorm(net, ((b, None) for b in batches), lambda x, _: net(x))
    assert count == 3
    bn = net[1]
    with torch.no_grad():
        outs = [net[0](b) for b in batches]
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in outs]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5) and torch.allclose(bn.running_var, var, rtol=1e-4)
    assert bn.momentum == 0.1  # restored: later training steps average exponentially again


def test_set_batchnorm_eval_leaves_other_layers_training():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Dropout(0.5))
    net.train()
    set_batchnorm_eval(net)
    assert [m.training for m in net] == [True, False, True]
    assert batchnorm_layers(net) == [net[1]]


@pytest.fixture(scope="module")
def frozen_run(phantom_dir, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bn") / "out"
    output = invoke_train("finetune", "--data", phantom_dir, "--out", out, "--epochs", "3", "--checkpoint-every", "1",
                    "--set", "train.freeze_batchnorm_epochs=2", *TINY)
    return out, output


def test_last_epochs_keep_statistics_fixed_while_weights_train(frozen_run):
    out, output = frozen_run
    assert "epoch 2: BatchNorm statistics re-estimated over" in output and "fixed for the last 2 epoch(s)" in output
    first, second, third = (load_checkpoint(out / f"epoch_00{i}.pt")["model_state"] for i in (1, 2, 3))
    for key, value in bn_stats(second).items():
        assert torch.equal(value, bn_stats(third)[key]), key  # fixed during epoch 3
    assert any(not torch.equal(v, bn_stats(first)[k]) for k, v in bn_stats(second).items())  # re-estimated
    weights = [k for k, v in third.items() if v.is_floating_point() and k not in bn_stats(third)]
    assert any(not torch.equal(second[k], third[k]) for k in weights)  # the weights still train


def test_resume_inside_the_frozen_phase_is_exact(frozen_run, tmp_path):
    out, _ = frozen_run
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copyfile(out / "epoch_002.pt", resumed / "last.pt")
    output = invoke_train("finetune", "--resume", resumed)
    assert "re-estimated" not in output  # the checkpoint carries the fixed statistics
    a, b = load_checkpoint(out / "last.pt")["model_state"], load_checkpoint(resumed / "last.pt")["model_state"]
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_negative_epoch_count_is_refused(phantom_dir, tmp_path):
    result = CliRunner().invoke(cli.app, ["finetune", "--data", str(phantom_dir), "--out", str(tmp_path / "o"),
                                          "--set", "train.freeze_batchnorm_epochs=-1", *TINY])
    assert result.exit_code != 0 and "epoch counts must be >= 0" in result.output + str(result.exception)


def test_recalibration_leaves_frozen_encoders_alone():
    """When BatchNorm is fixed while the encoders are still frozen, re-estimating it put the
    encoders back in train mode and replaced the statistics their freeze was meant to keep."""
    from medfuse.train.config import ModelConfig
    from medfuse.train.model import build_model
    from medfuse.train.schedule import set_encoders_frozen

    torch.manual_seed(0)
    model = build_model(ModelConfig.tiny())
    model.train()
    set_encoders_frozen(model, True)
    before = {k: v.clone() for k, v in bn_stats(model.state_dict()).items()}
    batches = [(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)) for _ in range(2)]
    recalibrate_batchnorm(model, batches, lambda a, b: model(a, b))
    after = bn_stats(model.state_dict())
    encoders = [k for k in before if k.startswith(("ct_encoder", "mri_encoder"))]
    others = [k for k in before if k not in encoders]
    assert encoders and all(torch.equal(before[k], after[k]) for k in encoders)
    assert any(not torch.equal(before[k], after[k]) for k in others)
    assert not model.ct_encoder.training and not model.mri_encoder.training
