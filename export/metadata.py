"""The medfuse keys stored in every ONNX file's `metadata_props`.

The runtime reads these and needs nothing else: the preprocessing config travels with the model
so inference can never drift from training.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from medfuse import __version__

VERSION = "medfuse.version"
MODEL_CONFIG = "medfuse.model_config"
PREPROCESS_CONFIG = "medfuse.preprocess_config"
CHECKPOINT_SHA256 = "medfuse.checkpoint_sha256"
PRECISION = "medfuse.precision"
MODALITY_PAIR = "medfuse.modality_pair"

PRECISIONS = ("fp32", "fp16", "int8")


def exported_modality_pair(checkpoint: dict, path) -> str:
    """The checkpoint's modality pair as the runtime knows it. A visible-infrared pretraining model
    fuses two gray images exactly as a CT-MRI one does, so it is published as ct-mri."""
    from medfuse.runtime.modality import check_modality_pair

    pair = checkpoint.get("modality_pair") or "ct-mri"
    return check_modality_pair("ct-mri" if pair == "vis-ir" else pair, path)


def build_metadata(model_config: dict, preprocess_config: dict, checkpoint_sha256: str,
                   modality_pair: str = "ct-mri") -> dict[str, str]:
    """The precision-independent keys; `with_precision` adds the last one per file."""
    return {
        VERSION: __version__,
        MODEL_CONFIG: json.dumps(model_config, sort_keys=True),
        PREPROCESS_CONFIG: json.dumps(preprocess_config, sort_keys=True),
        CHECKPOINT_SHA256: checkpoint_sha256,
        MODALITY_PAIR: modality_pair,
    }


def with_precision(metadata: dict[str, str], precision: str) -> dict[str, str]:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {**metadata, PRECISION: precision}


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    """Replace our keys (tools such as the quantizer add their own; those stay)."""
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    return model


def read_metadata(path: str | Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
