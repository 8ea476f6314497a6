"""Checkpoints: atomic save, safe load (weights_only), model loading and vis/ir -> ct/mri remapping.

A checkpoint is a plain dict (see `FORMAT`): tensors, numbers, strings, lists, tuples and dicts
only, so `torch.load(weights_only=True)` can read it and a file can never run code on load.
`save_checkpoint` refuses anything else before writing, instead of producing a file that
cannot be read back.
"""

from __future__ import annotations

import pickle
import random
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medfuse import __version__
from medfuse.runtime.atomic import atomic_output
from medfuse.runtime.checksum import sha256_file
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.preprocess import PreprocessConfig

from .config import ModelConfig
from .model import FusionNet

FORMAT = "medfuse-checkpoint"
FORMAT_VERSION = 1
ROLE_MAP_PRETRAIN_TO_MEDICAL = {"vis": "ct", "ir": "mri"}

_PLAIN = (torch.Tensor, str, int, float, bool, type(None))


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write `payload` atomically; format, format_version and medfuse_version are filled in."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "medfuse_version": __version__, **payload}
    _check_plain(payload, "checkpoint")
    path = Path(path)
    try:
        with atomic_output(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError, MedfuseError) as err:  # torch.save reports a full disk as a RuntimeError
        cause = err.__cause__ if isinstance(err, MedfuseError) and err.__cause__ else err  # the OS's own words
        free_mib = shutil.disk_usage(path.parent).free / 2**20 if path.parent.exists() else float("nan")
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise MedfuseError(f"could not write the checkpoint ({free_mib:.0f} MiB free on its disk; the default "
                           f"model's checkpoint takes about 0.66 GB): {reason}", path) from err
    return path


def _check_plain(obj: object, where: str) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is not a str or int")
            _check_plain(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            _check_plain(value, f"{where}[{index}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(f"{where} is a {type(obj).__name__}: weights_only loading could not read it back")


def load_checkpoint(path: str | Path) -> dict:
    """Read a medfuse checkpoint; a missing, corrupt or foreign file raises MedfuseError."""
    path = Path(path)
    if not path.is_file():
        raise MedfuseError("checkpoint not found", path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; truncation loses its directory
        raise MedfuseError("cannot read checkpoint: it is truncated, corrupt or not a torch file", path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise MedfuseError("refusing to load checkpoint: it holds objects other than tensors and plain data", path) from err
    except Exception as err:  # damaged members inside an intact zip directory
        raise MedfuseError(f"cannot read checkpoint: it is corrupt ({type(err).__name__})", path) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise MedfuseError(f"not a medfuse checkpoint (no format={FORMAT!r} entry)", path)
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise MedfuseError(
            f"checkpoint format version {data['format_version']} is newer than this medfuse reads ({FORMAT_VERSION})",
            path,
        )
    if "model_state" not in data or "model_config" not in data:
        raise MedfuseError("checkpoint lacks model_state or model_config", path)
    return data


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[FusionNet, ModelConfig, PreprocessConfig, str]:
    """(model in eval mode, its ModelConfig, the PreprocessConfig it was trained with, file sha256)."""
    return (*model_from_checkpoint(load_checkpoint(path), path, device), sha256_file(path))


def model_from_checkpoint(data: dict, path: str | Path,
                          device: str | torch.device = "cpu") -> tuple[FusionNet, ModelConfig, PreprocessConfig]:
    """The model (eval mode) and configs of an already loaded checkpoint dict (`path` names it in errors)."""
    try:
        model_cfg = ModelConfig.from_dict(data["model_config"])
        pre_cfg = PreprocessConfig.from_dict(data.get("preprocess_config") or {})
    except (TypeError, ValueError) as err:
        raise MedfuseError(f"checkpoint config is invalid: {err}", path) from err
    model = FusionNet(model_cfg)
    report = load_state(model, data["model_state"])
    if not report.complete:
        raise MedfuseError(f"checkpoint weights do not match its model config: {report.summary()}", path)
    return model.to(device).eval(), model_cfg, pre_cfg


def remap_roles(state: dict[str, torch.Tensor], mapping: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Rename `{old}_encoder.*` keys to `{new}_encoder.*` (default vis->ct, ir->mri); other keys unchanged."""
    mapping = ROLE_MAP_PRETRAIN_TO_MEDICAL if mapping is None else mapping
    renamed = {}
    for key, value in state.items():
        role, sep, rest = key.partition("_encoder.")
        renamed[f"{mapping[role]}{sep}{rest}" if sep and role in mapping else key] = value
    return renamed


@dataclass
class LoadReport:
    """What `load_state` did: tensors loaded, model keys left at init, extra keys, shape clashes."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, ckpt, model

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (
            f"{len(self.loaded)} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape mismatches"
        )

    def lines(self, limit: int = 5) -> list[str]:
        """The summary, then up to `limit` examples of each problem, for the trainer to print."""
        out = [self.summary()]
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            out += [f"  {label}: {key}" for key in items[:limit]]
        out += [f"  shape mismatch: {key} checkpoint {c} vs model {m}" for key, c, m in self.mismatched[:limit]]
        return out


def load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    """Load every tensor whose name and shape fit; report the rest instead of failing."""
    own = model.state_dict()
    report = LoadReport()
    usable = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            usable[key] = value
    report.loaded = sorted(usable)
    report.missing = sorted(set(own) - set(usable) - {k for k, _, _ in report.mismatched})
    model.load_state_dict(usable, strict=False)
    return report


def capture_rng_state() -> dict:
    """Python, NumPy and torch (CPU + CUDA) RNG states as weights_only-loadable plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": _to_lists(random.getstate()),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of capture_rng_state (CUDA states are restored only when CUDA is present)."""
    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj):
    return [_to_lists(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj):
    return tuple(_to_tuples(x) for x in obj) if isinstance(obj, (tuple, list)) else obj
