"""medfuse-bench --split val with a checkpoint scores that checkpoint's own held-out cases."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from medfuse.benchmarks.cli import app
from medfuse.runtime.phantom import write_phantom_dataset
from medfuse.train.split import HARVARD_CASE_REGEX, split_by_case


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("d"), n_cases=10, slices_per_case=1, size=32)


def _checkpoint(path, **train):
    import torch

    from medfuse.runtime.preprocess import PreprocessConfig
    from medfuse.train.checkpoint import save_checkpoint
    from medfuse.train.config import ModelConfig
    from medfuse.train.model import build_model

    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    return save_checkpoint(path, {"model_config": cfg.to_dict(), "preprocess_config": PreprocessConfig(input_size=32).to_dict(),
                                  "train_config": train, "model_state": build_model(cfg).state_dict(), "epoch": 1,
                                  "modality_pair": "ct-mri"})


def _val_pairs(data, ckpt, *extra) -> tuple[int, str]:
    out = data.parent / "q.json"
    result = CliRunner().invoke(app, ["quality", "--data", str(data), "--split", "val", "-c", str(ckpt),
                                                      "-e", "pytorch-fp32", "--baselines", "maximum", "--json",
                                                      str(out), *extra])
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(out.read_text())["quality"][0]["pairs"], result.stderr


def test_split_defaults_come_from_the_checkpoints_training_run(data, tmp_path):
    names = sorted(p.stem for p in (data / "CT").iterdir())
    trained = dict(stage="finetune", seed=7, split_seed=3, val_fraction=0.3, case_regex=HARVARD_CASE_REGEX)
    ckpt = _checkpoint(tmp_path / "ft.pt", **trained)
    held_out = split_by_case(names, 0.3, HARVARD_CASE_REGEX, 3)[1]
    assert held_out != split_by_case(names, 0.2, HARVARD_CASE_REGEX, 0)[1]  # the defaults would score others
    pairs, said = _val_pairs(data, ckpt)
    assert pairs == len(held_out) == 3
    assert "split: seed 3, validation fraction 0.3" in said and "from the checkpoint's training run" in said
    # what the user gives wins, option by option
    pairs, said = _val_pairs(data, ckpt, "--val-fraction", "0.2")
    assert pairs == 2 and "validation fraction 0.2" in said
    assert said.rstrip().endswith("(--seed, --case-regex from the checkpoint's training run)")


def test_a_pretraining_checkpoint_or_no_checkpoint_keeps_trainings_defaults(data, tmp_path):
    ckpt = _checkpoint(tmp_path / "pre.pt", stage="pretrain", seed=5, val_fraction=0.5, case_regex=None)
    pairs, said = _val_pairs(data, ckpt)
    assert pairs == 2 and "split:" not in said  # 0.2 of 10 cases, the Harvard regex


def test_keys_a_checkpoint_lacks_keep_trainings_defaults(data, tmp_path):
    """An older fine-tuning checkpoint without case_regex: Harvard's, as training would fill it in,
    and only what the checkpoint did give is said to come from it."""
    ckpt = _checkpoint(tmp_path / "old.pt", stage="finetune", seed=3)
    pairs, said = _val_pairs(data, ckpt)
    names = sorted(p.stem for p in (data / "CT").iterdir())
    assert pairs == len(split_by_case(names, 0.2, HARVARD_CASE_REGEX, 3)[1])
    assert f"case regex '{HARVARD_CASE_REGEX}'" in said and said.rstrip().endswith("(--seed from the checkpoint's training run)")
