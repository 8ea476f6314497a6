"""Find and read a model folder: the artifact folder `medfuse-export` writes.

Lookup order: `--model DIR` (or one model file in it), else `$MEDFUSE_MODEL`, else the default
folder `$XDG_CACHE_HOME/medfuse/model` (`~/.cache/medfuse/model`), so one
`medfuse-export CKPT -o ~/.cache/medfuse/model` serves every later `medfuse-run` in any directory.

The preprocessing config comes from the model itself (ONNX `metadata_props` or the engine's
sidecar), falling back to `manifest.json`: the runtime preprocesses exactly as training did.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.modality import DEFAULT_MODALITY_PAIR, MODALITY_PAIRS
from medfuse.runtime.preprocess import PreprocessConfig

MODEL_ENV = "MEDFUSE_MODEL"
MANIFEST = "manifest.json"
PLAN = "model.plan"
PLAN_SIDECAR = "model.plan.json"
# precision -> conventional ONNX file name in the artifact folder
ONNX_FILES: dict[str, str] = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
PREPROCESS_KEY = "medfuse.preprocess_config"
MODALITY_KEY = "medfuse.modality_pair"
MODALITY_PAIR = DEFAULT_MODALITY_PAIR  # what a model without the key (an early export) fuses


def default_model_dir(env: Mapping[str, str] = os.environ) -> Path:
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "medfuse" / "model"


def how_to_make(folder: Path | str) -> str:
    return f"make one with `medfuse-export CHECKPOINT -o {folder}`"


@dataclass(frozen=True)
class ModelDir:
    """The runnable artifacts of one model folder."""

    root: Path
    source: str  # how it was found: "--model", "$MEDFUSE_MODEL" or "default"
    onnx: dict[str, Path] = field(default_factory=dict)  # precision -> ONNX file
    plan: Path | None = None
    plan_info: dict | None = None  # model.plan.json, None when absent
    manifest: dict | None = None

    def describe(self) -> str:
        files = [p.name for p in self.onnx.values()] + ([self.plan.name] if self.plan else [])
        return f"{self.root} ({self.source}: {', '.join(files)})"


def locate(option: Path | None, env: Mapping[str, str] = os.environ, label: str = "--model") -> tuple[Path, str]:
    """The model path to use and where it came from (`label` names the option or argument given,
    for the messages); no check that it holds a model."""
    if option is not None:
        return Path(option).expanduser(), label
    if env.get(MODEL_ENV):
        return Path(env[MODEL_ENV]).expanduser(), f"${MODEL_ENV}"
    return default_model_dir(env), "default"


def open_model_dir(option: Path | None = None, env: Mapping[str, str] = os.environ,
                   label: str = "--model") -> ModelDir:
    """Find the model folder (see module doc) and list what it holds; one clear error otherwise."""
    path, source = locate(option, env, label)
    if not path.exists():
        if source == "default":
            raise MedfuseError(
                f"no medfuse model found: pass {label} DIR, set ${MODEL_ENV}, or {how_to_make(path)}")
        raise MedfuseError(f"model folder not found (from {source}); {how_to_make(path)}", path)
    if path.is_file():
        return _single_file(path, source)
    return _scan(path, source)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MedfuseError(f"cannot read this JSON file ({err})", path) from None
    if not isinstance(data, dict):
        raise MedfuseError("expected a JSON object", path)
    return data


def _manifest_onnx(root: Path, manifest: dict | None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for art in (manifest or {}).get("artifacts", []):
        if isinstance(art, dict) and art.get("format") == "onnx" and (root / str(art.get("file"))).is_file():
            out.setdefault(str(art.get("precision", "fp32")), root / str(art["file"]))
    return out


def _scan(root: Path, source: str) -> ModelDir:
    manifest = _read_json(root / MANIFEST) if (root / MANIFEST).is_file() else None
    onnx = _manifest_onnx(root, manifest)
    for precision, name in ONNX_FILES.items():
        if precision not in onnx and (root / name).is_file():
            onnx[precision] = root / name
    plan = root / PLAN if (root / PLAN).is_file() else None
    plan_info = _read_json(root / PLAN_SIDECAR) if plan and (root / PLAN_SIDECAR).is_file() else None
    if not onnx and plan is None:
        raise MedfuseError(f"no medfuse model here (expected {', '.join(ONNX_FILES.values())} or {PLAN}); "
                           f"{how_to_make(root)}", root)
    return ModelDir(root, source, onnx, plan, plan_info, manifest)


def verify_onnx(model: ModelDir, path: Path) -> None:
    """Refuse an ONNX file whose bytes differ from the sha256 its manifest.json recorded at export:
    damaged weights still load and run, and fuse to a black or noisy image without any error."""
    from medfuse.runtime.checksum import sha256_file

    listed = {a.get("file"): a.get("sha256") for a in (model.manifest or {}).get("artifacts", [])}
    expected = listed.get(path.name) if path.parent == model.root else None
    if expected and path.is_file() and sha256_file(path) != expected:
        raise MedfuseError("differs from the sha256 manifest.json recorded at export (damaged, or replaced by "
                           "another export): export it again", path)


def onnx_precision_from_name(path: Path) -> str:
    for precision, name in ONNX_FILES.items():
        if precision != "fp32" and path.name.endswith(name.removeprefix("model")):
            return precision
    return "fp32"


def _single_file(path: Path, source: str) -> ModelDir:
    """`--model FILE`: that one artifact, with the folder's manifest for its configs."""
    root = path.parent
    manifest = _read_json(root / MANIFEST) if (root / MANIFEST).is_file() else None
    if path.suffix == ".onnx":
        return ModelDir(root, source, {onnx_precision_from_name(path): path}, None, None, manifest)
    if path.suffix in (".plan", ".engine"):
        sidecar = path.with_name(path.name + ".json")
        info = _read_json(sidecar) if sidecar.is_file() else None
        return ModelDir(root, source, {}, path, info, manifest)
    raise MedfuseError("not a model file: --model takes an artifact folder, a .onnx file or a .plan engine", path)


def modality_pair(metadata: Mapping[str, str], model: ModelDir, artifact: Path) -> str:
    """The pair the model fuses (ct-mri, pet-mri, spect-mri): its metadata, else manifest.json, else ct-mri."""
    pair = metadata.get(MODALITY_KEY) or (model.manifest or {}).get("modality_pair") or MODALITY_PAIR
    if pair not in MODALITY_PAIRS:
        raise MedfuseError(f"this model fuses {pair}, which this medfuse cannot run (it runs "
                           f"{', '.join(MODALITY_PAIRS)})", artifact)
    return pair


def preprocess_config(metadata: Mapping[str, str], model: ModelDir, artifact: Path) -> PreprocessConfig:
    """The model's preprocessing: from its own metadata, else from manifest.json."""
    modality_pair(metadata, model, artifact)  # refuse a model of a pair this runtime cannot prepare
    text = metadata.get(PREPROCESS_KEY)
    try:
        if text:
            return PreprocessConfig.from_json(text)
        if model.manifest and isinstance(model.manifest.get("preprocess_config"), dict):
            return PreprocessConfig.from_dict(model.manifest["preprocess_config"])
    except (ValueError, TypeError) as err:
        raise MedfuseError(f"the model's preprocessing config is invalid ({err}); re-export it", artifact) from None
    raise MedfuseError(f"the model carries no preprocessing config ({PREPROCESS_KEY} metadata) and there is "
                       f"no {MANIFEST} beside it; re-export it with medfuse-export", artifact)


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata_props through onnxruntime (no onnx package needed)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise MedfuseError(f"onnxruntime cannot load this model: {str(err).strip().splitlines()[0]}", path) from None
    return dict(session.get_modelmeta().custom_metadata_map)
