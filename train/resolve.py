"""From what the user typed to the `RunConfig` a run uses, for a new run or a resumed one.

Layers, later ones winning: stage defaults, the model preset (`--model-size`, or the --init
checkpoint's architecture), the --config file, explicit options, then --set. A resumed run
starts from its checkpoint's settings instead; the same layers may be given again (a script that
repeats its command works) but may change nothing except the RESUMABLE settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medfuse.runtime.errors import MedfuseError
from medfuse.train.checkpoint import load_checkpoint
from medfuse.train.config import ModelConfig
from medfuse.train.run_config import SECTIONS, STAGE_ROLES, RunConfig, read_config_file

# Settings a resumed run may change; anything else would make it a different run.
RESUMABLE = {"epochs", "device", "precision", "num_workers", "threads", "steps_per_epoch", "max_nonfinite_steps"}
PATH_FIELDS = {"data", "out", "init", "backbone_weights"}
MODEL_PRESETS = {"default": ModelConfig, "tiny": ModelConfig.tiny}


@dataclass(frozen=True)
class Request:
    """The command line of one `medfuse-train` call, before any defaults."""

    stage: str
    train: dict = field(default_factory=dict)  # TrainConfig fields given as options
    config_file: Path | None = None
    model_size: str | None = None  # a MODEL_PRESETS key
    input_size: int | None = None
    extra: dict = field(default_factory=dict)  # --set, as {section: {field: value}}


def _layered(base: RunConfig, req: Request, init_model: ModelConfig | None = None) -> RunConfig:
    file_data = read_config_file(req.config_file) if req.config_file else {}
    run = base.merged(file_data, str(req.config_file))
    run = run.updated("train", {**req.train, "stage": req.stage})
    preset = MODEL_PRESETS[req.model_size]() if req.model_size else init_model
    if preset is not None:  # a preset sits under the file's [model] fields, not over them
        run = run.updated("model", {**preset.to_dict(), **file_data.get("model", {})})
    if req.input_size is not None:
        run = run.updated("preprocess", {"input_size": req.input_size})
    run = run.merged(req.extra, "--set")
    return run.updated("model", {"roles": list(STAGE_ROLES[req.stage])})


def fresh_run(req: Request) -> RunConfig:
    from medfuse.train.setup import init_model_config

    run = _layered(RunConfig.defaults(req.stage), req)
    if req.model_size is None and run.train.init:
        run = _layered(RunConfig.defaults(req.stage), req, init_model_config(run.train.init, STAGE_ROLES[req.stage]))
    if not run.train.data or not run.train.out:
        raise MedfuseError("--data and --out are required (or give them in the config file)")
    # Absolute in config.json and the checkpoint, so --resume and --config work from any folder.
    return run.updated("train", {k: str(Path(v).resolve()) for k in PATH_FIELDS if (v := getattr(run.train, k))})


def saved_run(ckpt: dict, stage: str, source: Path) -> RunConfig:
    try:
        saved = {
            "train": ckpt["train_config"], "model": ckpt["model_config"], "preprocess": ckpt["preprocess_config"],
            "loss": ckpt.get("loss_config", {}), "augment": ckpt.get("augment_config", {}),
        }
    except KeyError as err:
        raise MedfuseError(f"checkpoint has no {err.args[0]}: it is not a training checkpoint", source) from err
    run = RunConfig.defaults(stage).merged(saved, str(source))
    if run.train.stage != stage:
        raise MedfuseError(f"this is a {run.train.stage} run; resume it with `medfuse-train {run.train.stage}`", source)
    return run


def _normalised(run: RunConfig) -> dict:
    data = run.to_dict()
    for key in PATH_FIELDS:
        if data["train"].get(key):
            data["train"][key] = str(Path(data["train"][key]).resolve())
    return data


def resumed_run(folder: Path, req: Request) -> tuple[RunConfig, dict]:
    """The saved run (with RESUMABLE changes applied) and its last.pt, or an error naming what differs."""
    source = folder / "last.pt"
    ckpt = load_checkpoint(source)
    saved = saved_run(ckpt, req.stage, source).updated("train", {"out": str(folder)})
    train = {**req.train, "out": req.train.get("out", str(folder))}
    requested = _layered(saved, Request(req.stage, train, req.config_file, req.model_size, req.input_size, req.extra))
    before, after = _normalised(saved), _normalised(requested)
    changed = [
        f"{section}.{key}"
        for section in SECTIONS
        for key in after[section]
        if after[section][key] != before[section][key] and not (section == "train" and key in RESUMABLE)
    ]
    if changed:
        raise MedfuseError(
            f"--resume continues the saved run, but these settings differ from it: {', '.join(changed)} "
            f"(only {', '.join(sorted(RESUMABLE))} may change)"
        )
    done = int(ckpt.get("epoch", 0))
    if requested.train.epochs < done:  # equal: a finished run's command repeated, nothing to do
        raise MedfuseError(f"the run has already trained {done} epochs, more than --epochs {requested.train.epochs}; "
                           f"give {done} or more (more continues it)", source)
    return requested, ckpt
