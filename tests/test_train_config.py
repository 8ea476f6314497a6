"""Run configuration layers: stage defaults < config file (JSON/TOML) < options < --set."""

from __future__ import annotations

import json

import pytest

from medfuse.runtime.errors import MedfuseError
from medfuse.train.cli import _parse_set, _train_values
from medfuse.train.resolve import Request, fresh_run
from medfuse.train.run_config import RunConfig, TrainConfig, read_config_file


def test_spec_defaults_per_stage():
    ft = TrainConfig.for_stage("finetune")
    assert (ft.batch_size, ft.epochs, ft.lr, ft.warmup_epochs, ft.freeze_encoder_epochs) == (4, 30, 1e-5, 3, 5)
    assert (ft.grad_clip, ft.patience, ft.checkpoint_every, ft.weight_decay) == (1.0, 10, 5, 1e-4)
    assert ft.case_regex == r"^(\d{2})"
    pre = RunConfig.defaults("pretrain")
    assert pre.train.case_regex is None and pre.model.roles == ("vis", "ir") and pre.train.lr == 1e-4


def test_file_then_options_then_set(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[train]\nepochs = 7\nlr = 3e-5\n[loss]\nw_content = 1.0\n[preprocess]\nclahe = true\n'
                    '[model]\noutput_head = "plain"\n')
    train = _train_values(data=tmp_path, out=tmp_path / "o", lr=2e-5, case_regex="", precision=None, threads=1)
    run = fresh_run(Request("finetune", train, toml, "tiny", 64, _parse_set(["loss.w_medical=2", "augment.hflip_p=0"])))
    assert run.train.epochs == 7 and run.train.lr == 2e-5  # option beats file
    assert run.train.case_regex is None and run.train.data == str(tmp_path) and run.train.threads == 1
    assert run.loss.w_content == 1.0 and run.loss.w_medical == 2 and run.augment.hflip_p == 0
    assert run.preprocess.clahe and run.preprocess.input_size == 64
    assert run.model.width == 8 and run.model.roles == ("ct", "mri")
    assert run.model.output_head == "plain"  # the preset sits under the file's [model] fields
    # the output folder's config.json is itself a valid --config
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(run.to_dict()))
    again = fresh_run(Request("finetune", config_file=saved))
    assert again == run


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"trian": {}}')
    with pytest.raises(MedfuseError, match=r"unknown section\(s\) \['trian'\]"):
        RunConfig.defaults("finetune").merged(read_config_file(bad), str(bad))
    with pytest.raises(MedfuseError, match="unknown train setting"):
        RunConfig.defaults("finetune").updated("train", {"epoch": 3})
    with pytest.raises(MedfuseError, match="batch_size and epochs must be positive"):
        RunConfig.defaults("finetune").updated("train", {"epochs": 0})
    with pytest.raises(MedfuseError, match="invalid preprocess setting"):
        RunConfig.defaults("finetune").updated("preprocess", {"input_size": 100})
    with pytest.raises(MedfuseError, match="SECTION.FIELD=VALUE"):
        _parse_set(["w_content=3"])
    with pytest.raises(MedfuseError, match="--data and --out are required"):
        fresh_run(Request("finetune"))
    (tmp_path / "broken.toml").write_text("[train\n")
    with pytest.raises(MedfuseError, match="cannot parse config file"):
        read_config_file(tmp_path / "broken.toml")


def test_device_and_precision_resolution():
    import torch

    from medfuse.train.device import resolve_device, resolve_precision, uses_channels_last

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "bf16" and uses_channels_last("bf16", cpu)
    assert resolve_precision("fp32", cpu) == "fp32" and not uses_channels_last("fp32", cpu)
    with pytest.raises(MedfuseError, match="fp16 needs CUDA"):
        resolve_precision("fp16", cpu)
    assert resolve_precision("auto", torch.device("cuda", 0)) == "fp16"
    assert resolve_device("cpu") == cpu
    with pytest.raises(MedfuseError, match="unsupported device|unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(MedfuseError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_values_are_checked_and_converted_to_the_field_type(tmp_path):
    base = RunConfig.defaults("finetune")
    # Text that spells the type is converted: "False" used to be stored as a truthy string (CLAHE on).
    assert base.updated("preprocess", {"clahe": "False"}, "--set").preprocess.clahe is False
    assert base.updated("train", {"epochs": 40.0}).train.epochs == 40  # a JSON writer's whole float
    assert base.merged(_parse_set(["preprocess.clahe=False", "train.epochs=12", "loss.w_content=1e-3"]), "--set") \
        == base.updated("preprocess", {"clahe": False}).updated("train", {"epochs": 12}).updated(
            "loss", {"w_content": 0.001})
    typo = tmp_path / "typo.toml"
    for text, needle in [('[train]\nepochs = 2.5\n', "train.epochs must be an int, got 2.5"),
                         ('[preprocess]\nclahe = "maybe"\n', "preprocess.clahe must be a bool"),
                         ('[loss]\nw_content = "abc"\n', "loss.w_content must be a float"),
                         ('[train]\nepochs = true\n', "train.epochs must be an int"),
                         ('[train]\nepoch = 3\n', "unknown train setting")]:
        typo.write_text(text)
        with pytest.raises(MedfuseError, match="must be|unknown") as raised:
            base.merged(read_config_file(typo), str(typo))
        assert str(raised.value).startswith(f"{typo}: ") and needle in str(raised.value)


def test_paths_are_stored_absolute_so_resume_works_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = fresh_run(Request("finetune", _train_values(data="data", out="runs/a"), model_size="tiny"))
    assert run.train.data == str(tmp_path / "data") and run.train.out == str(tmp_path / "runs" / "a")


def test_an_unusable_out_folder_is_refused_before_any_data_loads(tmp_path, monkeypatch):
    import os

    from medfuse.train.trainer import check_fresh_out

    (tmp_path / "afile").write_text("")
    with pytest.raises(MedfuseError, match="is a file"):
        check_fresh_out(tmp_path / "afile", overwrite=False)
    with pytest.raises(MedfuseError, match="not a folder"):
        check_fresh_out(tmp_path / "afile" / "sub", overwrite=False)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: os.fspath(p) != str(locked) and real(p, mode))  # root
    with pytest.raises(MedfuseError, match="read-only or no permission"):
        check_fresh_out(locked / "run", overwrite=False)
