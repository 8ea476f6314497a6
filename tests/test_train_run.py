"""medfuse-train end to end on phantom pairs with the tiny model: outputs, exact resume,
pretrain -> finetune role mapping, non-finite losses, corrupt checkpoints."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from typer.testing import CliRunner

from train_support import invoke_train
from medfuse.train import cli
from medfuse.train.checkpoint import load_checkpoint, load_model
from medfuse.train.device import DistEnv
from medfuse.train.run_config import RunConfig
from medfuse.train.trainer import NonFiniteLoss, Trainer

TINY = ["--model-size", "tiny", "--input-size", "64", "--batch-size", "2", "--precision", "fp32", "--device", "cpu",
        "--val-fraction", "0.3", "--warmup-epochs", "1", "--freeze-encoder-epochs", "1"]
CONTRACT_KEYS = {
    "format", "format_version", "medfuse_version", "model_config", "preprocess_config", "train_config",
    "model_state", "epoch", "optimizer_state", "scheduler_state", "scaler_state", "rng_state",
    "best_val_loss", "modality_pair",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; tiny models gain nothing from more
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finished_run(phantom_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    output = invoke_train("finetune", "--data", phantom_dir, "--out", out, "--epochs", "3", "--checkpoint-every", "2", *TINY)
    return out, output


def test_run_writes_every_output(finished_run):
    out, output = finished_run
    names = {p.name for p in out.iterdir()}
    assert {"best.pt", "last.pt", "epoch_002.pt", "history.json", "curves.png", "config.json"} <= names
    assert not [n for n in names if n.startswith(".tmp")]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "epoch   1/3" in output and "done: 3 epochs" in output and "1 held-out case(s): 0" in output

    history = json.loads((out / "history.json").read_text())
    assert history["val_images"] == 2 and history["train_images"] == 4 and history["val_cases"]
    epochs = history["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert [e["frozen_encoders"] for e in epochs] == [True, False, False]
    for e in epochs:
        for split in ("train", "val"):
            assert set(e[split]) >= {"total", "content", "structure", "detail", "consistency", "gradient", "medical"}
        assert e["lr"]["encoders"] == pytest.approx(0.1 * e["lr"]["decoder"])
        assert e["lr"]["fusion"] == pytest.approx(0.5 * e["lr"]["decoder"])
        assert e["time_s"] > 0
    assert epochs[0]["lr"]["decoder"] == pytest.approx(1e-5)  # warmup 1 epoch: full rate at epoch 1
    assert epochs[2]["lr"]["decoder"] < epochs[1]["lr"]["decoder"]  # then cosine

    ckpt = load_checkpoint(out / "last.pt")
    assert CONTRACT_KEYS <= set(ckpt)
    assert ckpt["epoch"] == 3 and ckpt["modality_pair"] == "ct-mri"
    assert ckpt["model_config"]["roles"] == ["ct", "mri"] and ckpt["preprocess_config"]["input_size"] == 64
    best = min(e["val"]["total"] for e in epochs)
    assert load_checkpoint(out / "best.pt")["best_val_loss"] == pytest.approx(best)
    assert load_checkpoint(out / "epoch_002.pt")["epoch"] == 2  # a second name of epoch 2's file, kept
    model, model_cfg, pre_cfg, sha = load_model(out / "best.pt")
    assert model_cfg.width == 8 and pre_cfg.input_size == 64 and len(sha) == 64


def test_config_json_round_trips(finished_run):
    out, _ = finished_run
    saved = json.loads((out / "config.json").read_text())
    run = RunConfig.defaults("finetune").merged(saved, "config.json")
    assert run.to_dict() == saved
    assert run.train.epochs == 3 and run.model.width == 8 and run.train.lr == 1e-5


def test_resume_is_exact(finished_run, tmp_path):
    """Epoch 3 resumed from the epoch-2 checkpoint gives the uninterrupted run's weights bit for bit."""
    out, _ = finished_run
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copyfile(out / "epoch_002.pt", resumed / "last.pt")
    output = invoke_train("finetune", "--resume", resumed)
    assert "after epoch 2" in output
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert b["epoch"] == 3 and [e["epoch"] for e in b["history"]] == [1, 2, 3]
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    assert a["scheduler_state"]["last_epoch"] == b["scheduler_state"]["last_epoch"] == 3


def test_resume_with_more_epochs_stretches_the_schedule(finished_run, tmp_path):
    out, _ = finished_run
    longer = tmp_path / "longer"
    longer.mkdir()
    shutil.copyfile(out / "last.pt", longer / "last.pt")
    invoke_train("finetune", "--resume", longer, "--epochs", "4", "--steps-per-epoch", "1")
    history = load_checkpoint(longer / "last.pt")["history"]
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]
    # cosine over 4 epochs after 1 warmup epoch: epoch 4 trains at 0.5 (1 + cos(2 pi / 3)) = 0.25 of lr
    assert history[3]["lr"]["decoder"] == pytest.approx(0.25e-5)


def test_fresh_run_refuses_an_old_run_unless_overwrite(finished_run, phantom_dir, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(finished_run[0], out)
    args = ["finetune", "--data", phantom_dir, "--out", out, "--epochs", "1", "--limit-pairs", "2", *TINY]
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code != 0 and "already holds a training run" in str(result.exception)
    invoke_train(*args, "--overwrite")
    assert not (out / "epoch_002.pt").exists()  # the old run's files are gone, not mixed with the new
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())["epochs"]] == [1]


def test_resume_accepts_the_same_command_and_refuses_changes(finished_run, phantom_dir):
    out, _ = finished_run
    # a script that repeats its original command with --resume (finished run: nothing left to do)
    output = invoke_train("finetune", "--resume", out, "--data", phantom_dir, "--out", out, "--epochs", "3",
                    "--checkpoint-every", "2", *TINY)
    assert "after epoch 3" in output and load_checkpoint(out / "last.pt")["epoch"] == 3
    for change in (["--lr", "0.1"], ["--set", "loss.w_content=1"], ["--model-size", "default"]):
        result = CliRunner().invoke(cli.app, ["finetune", "--resume", str(out), *change])
        assert result.exit_code != 0 and "settings differ from it" in str(result.exception), change
    for change, needle in ((["--epochs", "2"], "already trained 3 epochs"), (["--overwrite"], "give one of them")):
        result = CliRunner().invoke(cli.app, ["finetune", "--resume", str(out), *change])
        assert result.exit_code != 0 and needle in str(result.exception), change
    assert load_checkpoint(out / "last.pt")["epoch"] == 3  # nothing rewritten


def test_resume_refuses_a_data_folder_whose_pairs_changed(phantom_dir, tmp_path):
    """Pairs added after a run started would redraw the split: held-out cases would be trained on."""
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    out = tmp_path / "out"
    invoke_train("finetune", "--data", data, "--out", out, "--epochs", "1", "--steps-per-epoch", "1", *TINY)
    assert load_checkpoint(out / "last.pt")["split"]["val"]  # the run's pairs are recorded
    for folder in ("CT", "MRI"):
        for src in sorted((data / folder).iterdir())[:2]:
            shutil.copyfile(src, data / folder / f"9{src.name[1:]}")  # a new case 9x
    result = CliRunner().invoke(cli.app, ["finetune", "--resume", str(out), "--epochs", "2"])
    assert result.exit_code != 0 and "no longer gives this run's pairs (2 added, 0 gone" in str(result.exception)
    assert "--init" in str(result.exception) and load_checkpoint(out / "last.pt")["epoch"] == 1


def test_init_from_another_architecture_is_refused(finished_run, phantom_dir, tmp_path):
    """A tiny checkpoint into a tiny model twice as wide: every tensor clashes; it used to train on from
    random weights with the encoders frozen, after a load report few would read."""
    out, _ = finished_run
    args = ["finetune", "--data", phantom_dir, "--out", tmp_path / "w", "--init", out / "best.pt", "--epochs", "1",
            *TINY, "--set", "model.width=16"]
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code != 0 and "another architecture" in str(result.exception)


def test_pretrain_then_finetune_maps_roles(phantom_dir, tmp_path):
    vis_ir = tmp_path / "vi"
    shutil.copytree(phantom_dir / "CT", vis_ir / "vis")
    shutil.copytree(phantom_dir / "MRI", vis_ir / "ir")
    invoke_train("pretrain", "--data", vis_ir, "--out", tmp_path / "pre", "--epochs", "1", "--limit-pairs", "2", *TINY)
    pre = load_checkpoint(tmp_path / "pre" / "last.pt")
    assert pre["modality_pair"] == "vis-ir" and any(k.startswith("vis_encoder.") for k in pre["model_state"])
    # no --model-size: the architecture comes from the --init checkpoint
    args = [a for a in TINY if a not in ("--model-size", "tiny")]
    output = invoke_train("finetune", "--data", phantom_dir, "--out", tmp_path / "ft", "--init", tmp_path / "pre" / "last.pt",
                    "--epochs", "1", "--limit-pairs", "2", *args)
    n = len(pre["model_state"])
    assert "(vis_ -> ct_, ir_ -> mri_)" in output and f"{n} tensors loaded, 0 missing, 0 unexpected, 0 shape mismatches" in output
    ft = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert ft["model_config"]["width"] == 8 and ft["model_config"]["roles"] == ["ct", "mri"]
    # encoders were frozen for the only epoch: they must still be the pretrained ones
    for key, value in pre["model_state"].items():
        if key.startswith("vis_encoder.") and "running" not in key and "num_batches" not in key:
            assert torch.equal(value, ft["model_state"][key.replace("vis_", "ct_", 1)]), key


def test_backbone_weights_reach_both_encoders(phantom_dir, tmp_path):
    from medfuse.train.encoders import ResNetEncoder

    torch.manual_seed(5)  # a torchvision-style state dict shaped like the tiny encoder, fc included
    state = {k: torch.randn_like(v) * 0.1 if k.endswith(("weight", "bias")) else v
             for k, v in ResNetEncoder("resnet18", in_channels=3, width=8).state_dict().items()}
    state["fc.weight"] = torch.zeros(10, 64)
    torch.save(state, tmp_path / "backbone.pth")
    output = invoke_train("finetune", "--data", phantom_dir, "--out", tmp_path / "o", "--backbone-weights", tmp_path / "backbone.pth",
                    "--epochs", "1", "--limit-pairs", "2", *TINY)
    assert "encoders initialised from" in output
    model = load_checkpoint(tmp_path / "o" / "last.pt")["model_state"]  # encoders frozen during the only epoch
    assert torch.equal(model["ct_encoder.conv1.weight"], state["conv1.weight"])
    assert torch.allclose(model["mri_encoder.conv1.weight"], state["conv1.weight"].mean(1, keepdim=True))
    assert torch.equal(model["mri_encoder.layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


def test_without_validation_the_training_loss_decides(phantom_dir, tmp_path):
    args = [a for a in TINY if a not in ("--val-fraction", "0.3")]
    output = invoke_train("finetune", "--data", phantom_dir, "--out", tmp_path / "o", "--val-fraction", "0", "--epochs", "1",
                    "--limit-pairs", "2", *args)
    assert "best train loss" in output and (tmp_path / "o" / "best.pt").exists()
    history = json.loads((tmp_path / "o" / "history.json").read_text())
    assert history["val_images"] == 0 and history["epochs"][0]["val"] is None


def _trainer(phantom_dir, tmp_path, **train) -> Trainer:
    run = RunConfig.defaults("finetune")
    run = run.updated("train", {"data": str(phantom_dir), "out": str(tmp_path / "o"), "precision": "fp32", "device": "cpu",
                                "batch_size": 2, "val_fraction": 0.3, "epochs": 1, **train})
    run = run.updated("model", {"encoder": "resnet18", "width": 8}).updated("preprocess", {"input_size": 64})
    return Trainer(run, DistEnv())


def test_non_finite_loss_skips_the_step_then_stops(phantom_dir, tmp_path):
    trainer = _trainer(phantom_dir, tmp_path, max_nonfinite_steps=2, freeze_encoder_epochs=0)
    real = trainer.loss_fn
    calls = {"n": 0}

    def first_nan(fused, ct, mri):
        calls["n"] += 1
        total, terms = real(fused, ct, mri)
        return (total * float("nan"), terms) if calls["n"] == 1 else (total, terms)

    trainer.loss_fn = first_nan
    trainer.fit()
    assert trainer.history[0]["train"]["skipped_steps"] == 1 and trainer.history[0]["train"]["total"] > 0

    trainer = _trainer(phantom_dir, tmp_path / "b", max_nonfinite_steps=2, freeze_encoder_epochs=0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.loss_fn = lambda fused, ct, mri: (fused.float().sum() * float("inf"), {})
    with pytest.raises(NonFiniteLoss, match="2 consecutive non-finite losses"):
        trainer.fit()
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights (and BN statistics) untouched
    assert all(not s for s in trainer.optimizer.state.values())  # no optimiser state either


@pytest.mark.parametrize("flag", ["--init", "--resume"])
def test_corrupt_checkpoint_is_one_line_exit_2(phantom_dir, tmp_path, monkeypatch, capsys, flag):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "last.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    target = bad / "last.pt" if flag == "--init" else bad
    argv = ["medfuse-train", "finetune", "--data", str(phantom_dir), flag, str(target)]
    if flag == "--init":
        argv += ["--out", str(tmp_path / "o")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "last.pt" in err and "checkpoint" in err


def test_crop_size_trains_on_windows_and_validates_on_whole_images(phantom_dir, tmp_path, monkeypatch):
    sizes = {True: set(), False: set()}  # model.training -> input sizes seen by the loss
    real = Trainer._forward_loss

    def recording(self, net, ct, mri):
        sizes[net.training].add(tuple(ct.shape[-2:]))
        return real(self, net, ct, mri)

    monkeypatch.setattr(Trainer, "_forward_loss", recording)
    out = tmp_path / "crop"
    invoke_train("finetune", "--data", phantom_dir, "--out", out, "--epochs", "1", "--limit-pairs", "4",
           "--set", "augment.crop_size=32", *TINY)
    assert sizes == {True: {(32, 32)}, False: {(64, 64)}}  # the inputs are 64x64
    assert json.loads((out / "config.json").read_text())["augment"]["crop_size"] == 32


def test_curves_are_drawn_at_most_every_30_s_and_after_the_last_epoch(phantom_dir, tmp_path, monkeypatch):
    from medfuse.train import trainer

    drawn = []
    real = trainer.plot_curves
    monkeypatch.setattr(trainer, "plot_curves", lambda path, history: (drawn.append(len(history)), real(path, history)))
    invoke_train("finetune", "--data", phantom_dir, "--out", tmp_path / "o", "--epochs", "3", *TINY)
    assert drawn == [1, 3]  # epoch 1, then not again within 30 s, then the final curves
    assert (tmp_path / "o" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
