"""`medfuse-train pretrain|finetune`: thin commands over `Trainer`.

Settings are layered (train/resolve.py): stage defaults < model preset (--model-size, or the
--init checkpoint's architecture) < --config FILE (JSON/TOML, sections train/model/loss/
preprocess/augment, the format of an output folder's config.json) < explicit options < --set.
The same command runs under `torchrun --nproc-per-node N` (DDP; only rank 0 writes).
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from medfuse.runtime.errors import MedfuseError, run_cli
from medfuse.runtime.versions import version_option
from medfuse.train.resolve import Request, fresh_run, resumed_run
from medfuse.train.run_config import SECTIONS
from medfuse.train.split import case_regex_option

app = typer.Typer(
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    help="Train the CT-MRI fusion model: visible-infrared pretraining, then CT-MRI fine-tuning.",
)


@app.callback()
def _root(version: Annotated[bool, version_option("medfuse-train")] = False) -> None:
    """Train the CT-MRI fusion model: visible-infrared pretraining, then CT-MRI fine-tuning."""


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class ModalityPair(str, Enum):
    ct_mri = "ct-mri"
    pet_mri = "pet-mri"  # DATA/PET (RGB pseudo-colour) + DATA/MRI; the network fuses the PET luma
    spect_mri = "spect-mri"


class ModelSize(str, Enum):
    default = "default"  # the spec's ResNet34 network (~55 M parameters)
    tiny = "tiny"  # ModelConfig.tiny(): same structure, a few hundred thousand parameters (demos, tests)


Data = Annotated[Optional[Path], typer.Option(help="Folder with CT/ (PET/, SPECT/) + MRI/ (finetune) or vis/ + ir/ (pretrain).")]
Out = Annotated[Optional[Path], typer.Option(help="Output folder: best.pt, last.pt, epoch_NNN.pt, history.json, curves.png, config.json.")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="JSON or TOML file of settings (sections train, model, loss, preprocess, augment).")]
Resume = Annotated[Optional[Path], typer.Option(help="Continue the run in this output folder from its last.pt.")]
BackboneWeights = Annotated[Optional[Path], typer.Option(help="Local torchvision resnet34 weights (.pth) for both encoders; nothing is downloaded.")]
Size = Annotated[Optional[ModelSize], typer.Option("--model-size", help="default: the spec network; tiny: for demos and tests.")]
InputSize = Annotated[Optional[int], typer.Option(help="Square model input side (multiple of 32); images are letterboxed to it.")]
BatchSize = Annotated[Optional[int], typer.Option(help="Batch size per process (default 4).")]
Epochs = Annotated[Optional[int], typer.Option(help="Epochs (default 30).")]
Lr = Annotated[Optional[float], typer.Option(help="Decoder/attention learning rate (default finetune 1e-5, pretrain 1e-4).")]
EncoderMult = Annotated[Optional[float], typer.Option(help="Encoder lr multiplier (default 0.1).")]
FusionMult = Annotated[Optional[float], typer.Option(help="Fusion-block lr multiplier (default 0.5).")]
WeightDecay = Annotated[Optional[float], typer.Option(help="AdamW weight decay (default 1e-4).")]
Warmup = Annotated[Optional[int], typer.Option(help="Linear warmup epochs before the cosine decay (default 3).")]
Freeze = Annotated[Optional[int], typer.Option(help="Epochs with frozen encoders (default finetune 5, pretrain 0).")]
Clip = Annotated[Optional[float], typer.Option(help="Max gradient norm, 0 disables (default 1.0).")]
Patience = Annotated[Optional[int], typer.Option(help="Early stop after this many epochs without a better val loss, 0 disables (default 10).")]
Every = Annotated[Optional[int], typer.Option(help="Keep epoch_NNN.pt every this many epochs, 0 disables (default 5).")]
ValFraction = Annotated[Optional[float], typer.Option(help="Share of the files held out for validation, in whole cases (default 0.2).")]
CaseRegex = Annotated[Optional[str], typer.Option(help="Regex whose first group is the case in a file stem; '' = every file is its own case (default finetune '^(\\d{2})', pretrain '').")]
Seed = Annotated[Optional[int], typer.Option(help="Seed of split, shuffling, augmentation and init (default 0).")]
PrecisionOpt = Annotated[Optional[Precision], typer.Option("--precision", help="auto = fp16+GradScaler on CUDA, bf16+channels_last on CPU.")]
Device = Annotated[Optional[str], typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")]
Augment = Annotated[Optional[bool], typer.Option("--augment/--no-augment", help="Flips and small rotations/shifts on training pairs (default on).")]
SkipUnpaired = Annotated[Optional[bool], typer.Option("--skip-unpaired", help="Ignore files without a partner (counted) instead of stopping.")]
LimitPairs = Annotated[Optional[int], typer.Option(help="Quick runs: use N training pairs (and ~N*val-fraction validation pairs).")]
StepsPerEpoch = Annotated[Optional[int], typer.Option(help="Quick runs: at most this many training batches per epoch.")]
Threads = Annotated[Optional[int], typer.Option(help="torch CPU threads (default: one per core); on a busy shared CPU, 1 can be several times faster.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out (its checkpoints, history, curves, config).")]
Workers = Annotated[Optional[int], typer.Option(help="DataLoader workers (default 0: data is already in memory).")]
Modality = Annotated[Optional[ModalityPair], typer.Option(help="ct-mri (default), pet-mri or spect-mri (DATA/PET or SPECT/): the functional luma is fused, its colours come back at inference; a CT-MRI or vis/ir --init loads as is.")]
Set = Annotated[Optional[list[str]], typer.Option("--set", help="Any other setting as SECTION.FIELD=VALUE, e.g. loss.w_content=10 (repeatable).")]


def _train_values(**options) -> dict:
    """The TrainConfig fields the user actually gave on the command line."""
    values = {k: (v.value if isinstance(v, Enum) else v) for k, v in options.items() if v is not None}
    for key in ("data", "out", "init", "backbone_weights"):
        if key in values:
            values[key] = str(values[key])
    if "case_regex" in values:
        values["case_regex"] = case_regex_option(values["case_regex"])
    return values


def _parse_set(items: list[str] | None) -> dict[str, dict]:
    sections: dict[str, dict] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in SECTIONS:
            raise MedfuseError(f"--set {item!r}: expected SECTION.FIELD=VALUE with SECTION in {sorted(SECTIONS)}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        sections.setdefault(section, {})[name] = value
    return sections


def _execute(stage: str, resume: Path | None, config_file: Path | None, model_size: ModelSize | None,
             input_size: int | None, set_items: list[str] | None, train: dict, overwrite: bool = False) -> None:
    from medfuse.train.device import init_distributed, shutdown_distributed
    from medfuse.train.trainer import Trainer

    if resume is not None and overwrite:
        raise MedfuseError("--resume continues a run and --overwrite replaces one: give one of them")
    req = Request(stage, train, config_file, model_size.value if model_size else None, input_size, _parse_set(set_items))
    run, ckpt = resumed_run(resume, req) if resume is not None else (fresh_run(req), None)
    env = init_distributed(run.train.device)
    try:
        Trainer(run, env, resume=ckpt, overwrite=overwrite).fit()
    finally:
        shutdown_distributed()


@app.command()
def pretrain(
    data: Data = None, out: Out = None, config: ConfigFile = None, resume: Resume = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from this checkpoint (same roles, vis/ir).")] = None,
    backbone_weights: BackboneWeights = None, model_size: Size = None, input_size: InputSize = None,
    batch_size: BatchSize = None, epochs: Epochs = None, lr: Lr = None, encoder_lr_mult: EncoderMult = None,
    fusion_lr_mult: FusionMult = None, weight_decay: WeightDecay = None, warmup_epochs: Warmup = None,
    freeze_encoder_epochs: Freeze = None, grad_clip: Clip = None, patience: Patience = None,
    checkpoint_every: Every = None, val_fraction: ValFraction = None, case_regex: CaseRegex = None,
    seed: Seed = None, precision: PrecisionOpt = None, device: Device = None, augment: Augment = None,
    skip_unpaired: SkipUnpaired = None, limit_pairs: LimitPairs = None, steps_per_epoch: StepsPerEpoch = None,
    num_workers: Workers = None, threads: Threads = None, overwrite: Overwrite = False, set_values: Set = None,
) -> None:
    """Visible-infrared pretraining on DATA/vis + DATA/ir (encoders named vis_/ir_)."""
    train = {k: v for k, v in locals().items() if k not in ("config", "resume", "model_size", "input_size", "set_values", "overwrite")}
    _execute("pretrain", resume, config, model_size, input_size, set_values, _train_values(**train), overwrite)


@app.command()
def finetune(
    data: Data = None, out: Out = None, config: ConfigFile = None, resume: Resume = None,
    init: Annotated[Optional[Path], typer.Option(help="Pretrained checkpoint; vis_/ir_ weights load as ct_/mri_ (a load report is printed).")] = None,
    backbone_weights: BackboneWeights = None, model_size: Size = None, input_size: InputSize = None,
    batch_size: BatchSize = None, epochs: Epochs = None, lr: Lr = None, encoder_lr_mult: EncoderMult = None,
    fusion_lr_mult: FusionMult = None, weight_decay: WeightDecay = None, warmup_epochs: Warmup = None,
    freeze_encoder_epochs: Freeze = None, grad_clip: Clip = None, patience: Patience = None,
    checkpoint_every: Every = None, val_fraction: ValFraction = None, case_regex: CaseRegex = None,
    seed: Seed = None, precision: PrecisionOpt = None, device: Device = None, augment: Augment = None,
    skip_unpaired: SkipUnpaired = None, limit_pairs: LimitPairs = None, steps_per_epoch: StepsPerEpoch = None,
    num_workers: Workers = None, threads: Threads = None, overwrite: Overwrite = False, set_values: Set = None,
    modality_pair: Modality = None,
) -> None:
    """Fine-tuning on DATA/CT (or PET/, SPECT/ with --modality-pair) + DATA/MRI, usually from an --init checkpoint."""
    train = {k: v for k, v in locals().items() if k not in ("config", "resume", "model_size", "input_size", "set_values", "overwrite")}
    _execute("finetune", resume, config, model_size, input_size, set_values, _train_values(**train), overwrite)


def main() -> None:
    # Under torchrun every process meets the same bad input: rank 0 says it, once.
    run_cli(app, say_errors=os.environ.get("RANK", "0") == "0")


if __name__ == "__main__":
    main()
