"""Training-run configuration: `TrainConfig` plus the bundle of every config a run uses.

A run's settings come from three layers, later ones winning: the stage's defaults (the spec's
values for fine-tuning), an optional JSON/TOML file, then command-line options. The output
folder's config.json is the merged result in the same sectioned format, so it can be passed
back with --config to repeat a run.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.modality import DEFAULT_MODALITY_PAIR, MODALITY_PAIRS
from medfuse.runtime.preprocess import PreprocessConfig
from medfuse.train.augment import AugmentConfig
from medfuse.train.config import LossConfig, ModelConfig
from medfuse.train.split import HARVARD_CASE_REGEX

STAGES = ("pretrain", "finetune")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STAGE_ROLES = {"pretrain": ("vis", "ir"), "finetune": ("ct", "mri")}


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the spec's fine-tuning values ("Implementation Details")."""

    stage: str = "finetune"  # "pretrain" (vis/ir folders, vis_/ir_ names) or "finetune" (CT/MRI)
    modality_pair: str = DEFAULT_MODALITY_PAIR  # finetune: ct-mri (CT/), pet-mri (PET/), spect-mri (SPECT/)
    # + MRI/. The functional luma takes the ct role (names stay ct_/mri_); pretraining is always vis-ir.
    data: str = ""  # folder holding CT/+MRI/ or vis/+ir/
    out: str = ""  # output folder (checkpoints, history, curves, config)
    init: str | None = None  # checkpoint to start from (fine-tuning: the pretrained vis/ir model)
    backbone_weights: str | None = None  # local torchvision resnet34 .pth for both encoders
    batch_size: int = 4  # per process
    epochs: int = 30
    lr: float = 1e-5  # decoder/attention rate; encoders get lr*encoder_lr_mult, fusion lr*fusion_lr_mult
    encoder_lr_mult: float = 0.1
    fusion_lr_mult: float = 0.5
    weight_decay: float = 1e-4  # AdamW, all groups
    warmup_epochs: int = 3  # linear warmup, then cosine to 0 at `epochs` (stepped per epoch)
    freeze_encoder_epochs: int = 5  # encoders frozen (no grad, BN in eval) for these first epochs
    # The last N epochs keep BatchNorm in eval mode, its statistics first re-estimated over the
    # training batches (train/batchnorm.py): the weights finish tuning to the network inference runs.
    freeze_batchnorm_epochs: int = 0
    grad_clip: float = 1.0  # max global grad norm, after unscaling; 0 disables
    patience: int = 10  # early stop after this many epochs without a better val loss; 0 disables
    checkpoint_every: int = 5  # also keep epoch_NNN.pt every this many epochs; 0 disables
    val_fraction: float = 0.2  # share of files held out, in whole cases
    case_regex: str | None = HARVARD_CASE_REGEX  # case key from the file stem; None: each file is a case
    seed: int = 0  # split, shuffling, augmentation and initialisation
    # The validation split's seed when it should not follow `seed`: several seeds of one recipe
    # scored on the same held-out cases. None: `seed`.
    split_seed: int | None = None
    precision: str = "auto"  # auto (CUDA fp16, CPU bf16), fp32, bf16, fp16 (CUDA only)
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    augment: bool = True  # flips + small rotation/translation on training pairs
    skip_unpaired: bool = False  # ignore files without a partner instead of stopping
    limit_pairs: int | None = None  # use only the first N pairs (quick runs)
    steps_per_epoch: int | None = None  # cap training batches per epoch (quick runs)
    num_workers: int = 0  # DataLoader workers; data is already in memory, so 0 is usually best
    threads: int | None = None  # torch CPU threads (None: torch's default, one per core). On a shared,
    # oversubscribed CPU use fewer than the free cores: a descheduled OpenMP thread stalls every op.
    max_nonfinite_steps: int = 3  # consecutive non-finite losses (steps skipped) before giving up

    def __post_init__(self) -> None:
        checks = [
            (self.stage in STAGES, f"stage must be one of {STAGES}"),
            (self.modality_pair in MODALITY_PAIRS, f"modality_pair must be one of {MODALITY_PAIRS}"),
            (self.stage == "finetune" or self.modality_pair == DEFAULT_MODALITY_PAIR,
             "modality_pair applies to finetune; pretraining is visible-infrared"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.batch_size > 0 and self.epochs > 0, "batch_size and epochs must be positive"),
            (self.lr > 0, "lr must be positive"),
            (min(self.warmup_epochs, self.freeze_encoder_epochs, self.freeze_batchnorm_epochs, self.patience,
                 self.checkpoint_every) >= 0,
             "epoch counts must be >= 0"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (self.steps_per_epoch is None or self.steps_per_epoch > 0, "steps_per_epoch must be positive"),
            (self.limit_pairs is None or self.limit_pairs > 0, "limit_pairs must be positive"),
            (self.threads is None or self.threads > 0, "threads must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise MedfuseError(f"invalid training config: {message}")

    @classmethod
    def for_stage(cls, stage: str, **values) -> TrainConfig:
        """Stage defaults: pretraining starts from scratch/ImageNet, so it trains faster and unfrozen."""
        if stage == "pretrain":
            values = {"lr": 1e-4, "freeze_encoder_epochs": 0, "case_regex": None, **values}
        return cls(stage=stage, **values)

    def to_dict(self) -> dict:
        return asdict(self)


SECTIONS = {
    "train": TrainConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "preprocess": PreprocessConfig,
    "augment": AugmentConfig,
}


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one training run, one section per config class."""

    train: TrainConfig
    model: ModelConfig
    loss: LossConfig
    preprocess: PreprocessConfig
    augment: AugmentConfig

    @classmethod
    def defaults(cls, stage: str) -> RunConfig:
        return cls(
            train=TrainConfig.for_stage(stage),
            model=ModelConfig(roles=STAGE_ROLES[stage]),
            loss=LossConfig(),
            preprocess=PreprocessConfig(),
            augment=AugmentConfig(),
        )

    def to_dict(self) -> dict:
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def updated(self, section: str, values: dict, source: str | None = None) -> RunConfig:
        """A copy with some fields of one section replaced; unknown fields and values of the wrong
        type are an error naming `source` (the config file, or --set)."""
        cls = SECTIONS[section]
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise MedfuseError(f"unknown {section} setting(s) {unknown}; known: {sorted(types)}", source)
        typed = {name: typed_value(value, types[name], f"{section}.{name}", source) for name, value in values.items()}
        merged = {**getattr(self, section).to_dict(), **typed}
        try:
            new = cls(**merged)
        except (TypeError, ValueError) as err:
            raise MedfuseError(f"invalid {section} setting: {err}", source) from err
        return replace(self, **{section: new})

    def merged(self, data: dict, source: str) -> RunConfig:
        """Apply a sectioned mapping ({"train": {...}, "model": {...}}) on top of this config."""
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise MedfuseError(f"unknown section(s) {unknown}; use {sorted(SECTIONS)}", source)
        config = self
        for section, values in data.items():
            if not isinstance(values, dict):
                raise MedfuseError(f"section [{section}] must be a table of settings", source)
            config = config.updated(section, values, source)
        return config


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def typed_value(value, annotation: str, name: str, source: str | None = None):
    """`value` as the field's type (annotations 'int', 'float | None', 'bool', 'str', ...).

    Text that spells the type is converted ("false", "2", "1e-3": --set and hand-written files);
    anything else is refused, never stored as it came: the string "False" is truthy and would
    switch a flag on, a float epoch count fails deep in the trainer.
    """
    kinds = {part.strip() for part in annotation.split("|")}
    if value is None:
        if "None" in kinds:
            return None
        raise MedfuseError(f"{name} cannot be empty (null)", source)
    kind = next((k for k in ("bool", "int", "float", "str") if k in kinds), None)
    if kind is None:  # tuples (model roles): checked by the config class itself
        return value
    converted = _convert(value, kind)
    if converted is None:
        raise MedfuseError(f"{name} must be {'a ' if kind != 'int' else 'an '}{kind}"
                           f"{' or empty' if 'None' in kinds else ''}, got {value!r}", source)
    return converted


def _convert(value, kind: str):
    """`value` as `kind`, or None when it is not one."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        return True if text in _TRUE else False if text in _FALSE else None
    if isinstance(value, bool):  # True is an int to Python, never a number of epochs
        return None
    if kind == "str":
        return value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else None
    if isinstance(value, str):
        try:
            value = float(value) if kind == "float" else int(value.strip())
        except ValueError:
            return None
    if kind == "int":  # 40.0 (a JSON writer's float) is 40; 2.5 epochs is no int
        whole = isinstance(value, float) and value.is_integer()
        return int(value) if whole else value if isinstance(value, int) else None
    return float(value) if isinstance(value, (int, float)) else None


def read_config_file(path: str | Path) -> dict:
    """A JSON or TOML (by suffix) file of sections, e.g. {"train": {"epochs": 10}}."""
    path = Path(path)
    if not path.is_file():
        raise MedfuseError("config file not found", path)
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(path.read_text())
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise MedfuseError(f"cannot parse config file ({err})", path) from err
    if not isinstance(data, dict):
        raise MedfuseError("config file must hold an object of sections", path)
    return data
