"""What a run needs before its first step: the case-split datasets and the starting weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from medfuse.runtime.errors import MedfuseError
from medfuse.train.checkpoint import ROLE_MAP_PRETRAIN_TO_MEDICAL, load_checkpoint, load_state, remap_roles
from medfuse.train.config import ModelConfig
from medfuse.train.data import PairDataset, find_pairs
from medfuse.train.encoders import load_backbone_weights
from medfuse.train.run_config import RunConfig
from medfuse.train.split import case_of, group_by_case, overshoot_warning, split_by_case

Log = Callable[[str], None]


@dataclass
class DataSplit:
    train: PairDataset
    val: PairDataset
    val_cases: list[str]
    names: dict[str, list[str]]  # "train"/"val" -> the pair names on each side (saved in checkpoints)


def _spread(names: list[str], n: int) -> list[str]:
    """n names evenly spaced over the sorted list, so a quick run still sees several cases."""
    if n >= len(names):
        return names
    return [names[(i * len(names)) // n] for i in range(n)]


def load_data(run: RunConfig, log: Log) -> DataSplit:
    """Pairs of the data folder, split by case, limited for quick runs, prepared in memory."""
    t = run.train
    pairs, unpaired = find_pairs(t.data, t.stage, t.skip_unpaired, t.modality_pair)
    if unpaired:
        log(f"skipped {len(unpaired)} unpaired file(s) (--skip-unpaired)")
    split_seed = t.seed if t.split_seed is None else t.split_seed
    train_names, val_names = split_by_case([p.name for p in pairs], t.val_fraction, t.case_regex, split_seed,
                                            t.data)
    if t.limit_pairs:
        train_names = _spread(train_names, t.limit_pairs)
        val_names = _spread(val_names, max(1, round(t.limit_pairs * t.val_fraction))) if val_names else []
    by_name = {p.name: p for p in pairs}
    val_cases = sorted({case_of(n, t.case_regex) for n in val_names})
    log(
        f"data: {len(pairs)} pairs in {t.data} -> {len(train_names)} train, {len(val_names)} val "
        f"({len(val_cases)} held-out case(s){': ' + ', '.join(val_cases[:8]) if t.case_regex else ''})"
    )
    visible = t.stage == "pretrain"  # the visible image is colour; CT must not be
    train = PairDataset([by_name[n] for n in train_names], run.preprocess, t.modality_pair, visible)
    val = PairDataset([by_name[n] for n in val_names], run.preprocess, t.modality_pair, visible)
    if val_names:  # a split was made, so every name has a case key
        warning = overshoot_warning(len(val), len(train) + len(val), t.val_fraction,
                                    len(group_by_case([p.name for p in pairs], t.case_regex)), t.case_regex)
        if warning:
            log(warning)
    return DataSplit(
        train=train,
        val=val,
        val_cases=val_cases,
        names={"train": list(train_names), "val": list(val_names)},
    )


def init_model_config(path: str | Path, roles: tuple[str, str]) -> ModelConfig:
    """The architecture of an --init checkpoint, renamed to this stage's roles."""
    data = load_checkpoint(path)
    try:
        return ModelConfig.from_dict(data["model_config"]).with_roles(roles)
    except (TypeError, ValueError) as err:
        raise MedfuseError(f"checkpoint model config is invalid: {err}", path) from err


def warm_start(model: nn.Module, run: RunConfig, log: Log) -> None:
    """ImageNet encoders from --backbone-weights, then --init on top (vis_/ir_ renamed to ct_/mri_)."""
    t = run.train
    if t.backbone_weights:
        load_backbone_weights(model, t.backbone_weights)
        log(f"encoders initialised from {t.backbone_weights}")
    if not t.init:
        if t.stage == "finetune":
            start = "ImageNet encoders" if t.backbone_weights else "random weights"
            log(f"no --init: fine-tuning starts from {start}, not from a pretrained vis/ir model")
        return
    data = load_checkpoint(t.init)
    state = data["model_state"]
    mapped = ""
    if t.stage == "finetune" and any(k.startswith("vis_") for k in state):
        state = remap_roles(state, ROLE_MAP_PRETRAIN_TO_MEDICAL)
        mapped = " (vis_ -> ct_, ir_ -> mri_)"
    report = load_state(model, state)
    lines = report.lines()
    log(f"init from {t.init}{mapped}: {lines[0]}")
    for line in lines[1:]:
        log(line)
    if not report.loaded:
        raise MedfuseError("no tensor of this checkpoint fits the model (another --model-size?)", t.init)
    # Missing keys are a grown model (a new block) and load fine; more clashing shapes than loaded
    # tensors is another architecture, and training would start from random weights, frozen.
    if len(report.mismatched) > len(report.loaded):
        raise MedfuseError(f"most of this checkpoint does not fit the model ({report.summary()}): it is another "
                           "architecture; leave out --model-size to take the checkpoint's, or match it", t.init)
