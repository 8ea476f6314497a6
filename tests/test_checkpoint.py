"""Checkpoints: round trip, atomic writes, clear errors for bad files, role remapping, RNG state."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.preprocess import PreprocessConfig
from medfuse.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model,
    load_state,
    remap_roles,
    restore_rng_state,
    save_checkpoint,
)
from medfuse.train.config import ModelConfig
from medfuse.train.model import build_model


def _payload(cfg: ModelConfig, seed: int = 0, **extra) -> dict:
    torch.manual_seed(seed)
    model = build_model(cfg)
    return {
        "model_config": cfg.to_dict(),
        "preprocess_config": PreprocessConfig(input_size=128, clahe=True).to_dict(),
        "model_state": model.state_dict(),
        "epoch": 4,
        "modality_pair": "ct-mri",
        **extra,
    }


@pytest.fixture
def saved(tmp_path):
    payload = _payload(ModelConfig.tiny(), rng_state=capture_rng_state())
    return save_checkpoint(tmp_path / "best.pt", payload), payload


def test_round_trip_gives_the_same_model_and_configs(saved):
    path, payload = saved
    model, model_cfg, pre_cfg, sha = load_model(path)
    assert not model.training
    assert model_cfg == ModelConfig.tiny()
    assert pre_cfg == PreprocessConfig(input_size=128, clahe=True)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    for key, value in payload["model_state"].items():
        assert torch.equal(model.state_dict()[key], value), key
    data = load_checkpoint(path)
    assert data["format"] == "medfuse-checkpoint" and data["format_version"] == 1
    assert data["epoch"] == 4 and "medfuse_version" in data


def test_save_is_atomic_and_refuses_unloadable_payloads(saved):
    path, _ = saved
    before = path.read_bytes()
    with pytest.raises(TypeError, match="weights_only"):
        save_checkpoint(path, {"model_state": {}, "model_config": {}, "rng": np.random.get_state()})
    assert path.read_bytes() == before
    save_checkpoint(path, _payload(ModelConfig.tiny(), seed=1))
    assert path.read_bytes() != before
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary files left


def test_a_failed_write_is_one_sentence_and_keeps_the_old_file(saved, monkeypatch):
    path, _ = saved
    before = path.read_bytes()

    def full_disk(payload, f):
        Path(f).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4757 vs 4756")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(MedfuseError, match=r"could not write the checkpoint \(\d+ MiB free") as err:
        save_checkpoint(path, _payload(ModelConfig.tiny(), seed=1))
    assert str(path) in str(err.value) and "unexpected pos" in str(err.value)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["best.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(MedfuseError, match="not found") as err:
        load_model(tmp_path / "absent.pt")
    assert "absent.pt" in str(err.value)


@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "empty"])
def test_corrupt_files_give_one_clear_error(saved, damage):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes({"random-bytes": bytes(range(256)) * 8, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(MedfuseError, match="truncated, corrupt or not a torch file") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_foreign_torch_files_are_rejected(tmp_path):
    plain = tmp_path / "state_dict.pt"
    torch.save(build_model(ModelConfig.tiny()).state_dict(), plain)
    with pytest.raises(MedfuseError, match="not a medfuse checkpoint"):
        load_checkpoint(plain)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "medfuse-checkpoint", "thing": torch.nn.Linear(1, 1)}, pickled)
    with pytest.raises(MedfuseError, match="objects other than tensors"):
        load_checkpoint(pickled)


def test_newer_format_version_is_rejected(tmp_path):
    path = save_checkpoint(tmp_path / "new.pt", _payload(ModelConfig.tiny(), format_version=99))
    with pytest.raises(MedfuseError, match="newer"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config_are_a_user_error(tmp_path):
    payload = _payload(ModelConfig.tiny())
    payload["model_config"] = ModelConfig.tiny(width=16).to_dict()
    path = save_checkpoint(tmp_path / "wrong.pt", payload)
    with pytest.raises(MedfuseError, match="shape mismatches"):
        load_model(path)


def test_remap_roles_turns_pretraining_names_into_medical_ones():
    state = build_model(ModelConfig.tiny(roles=("vis", "ir"))).state_dict()
    remapped = remap_roles(state)
    assert {k.split(".")[0] for k in remapped} == {"ct_encoder", "mri_encoder", "fusion", "decoder", "medical_attention"}
    assert torch.equal(remapped["mri_encoder.conv1.weight"], state["ir_encoder.conv1.weight"])
    assert remap_roles({"fusion.0.x": state["fusion.0.spatial_attention.conv.bias"]}).keys() == {"fusion.0.x"}
    report = load_state(build_model(ModelConfig.tiny()), remapped)
    assert report.complete and len(report.loaded) == len(state)


def test_load_report_lists_missing_unexpected_and_mismatched():
    state = remap_roles(build_model(ModelConfig.tiny(roles=("vis", "ir"))).state_dict())
    del state["decoder.head.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    state["medical_attention.layers.0.weight"] = torch.zeros(16, 3, 5, 5)
    target = build_model(ModelConfig.tiny())
    before = target.medical_attention.layers[0].weight.clone()
    report = load_state(target, state)
    assert report.missing == ["decoder.head.bias"]
    assert report.unexpected == ["decoder.extra.weight"]
    assert report.mismatched == [("medical_attention.layers.0.weight", (16, 3, 5, 5), (16, 3, 3, 3))]
    assert torch.equal(target.medical_attention.layers[0].weight, before)  # mismatches keep their init
    assert report.lines()[0] == f"{len(report.loaded)} tensors loaded, 1 missing, 1 unexpected, 1 shape mismatches"
    assert not report.complete


def test_rng_state_survives_a_checkpoint(saved):
    path, _ = saved
    restore_rng_state(load_checkpoint(path)["rng_state"])
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(load_checkpoint(path)["rng_state"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
