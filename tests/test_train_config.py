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
