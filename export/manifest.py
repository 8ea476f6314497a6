"""`manifest.json`: what an export wrote, with checksums, parity figures and the configs.

Written last, after every artifact is in place, so a folder with a manifest is a complete one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medfuse import __version__
from medfuse.runtime.atomic import atomic_output
from medfuse.runtime.checksum import sha256_file

MANIFEST = "manifest.json"
FORMATS = ("onnx", "tensorrt-plan")


@dataclass(frozen=True)
class ArtifactRecord:
    file: str  # name inside the artifacts folder
    format: str  # one of FORMATS
    precision: str  # fp32 | fp16 | int8
    sha256: str
    parity: dict | None = None  # ParityResult.to_dict(); None where no parity check ran (an engine here)
    details: dict = field(default_factory=dict)  # per-format extras (dynamic axes, engine profile, ...)

    @classmethod
    def of(cls, path: Path, fmt: str, precision: str, parity: dict | None = None, **details) -> ArtifactRecord:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        return cls(path.name, fmt, precision, sha256_file(path), parity, details)


def build_manifest(records: list[ArtifactRecord], *, checkpoint_sha256: str, model_config: dict,
                   preprocess_config: dict, modality_pair: str = "ct-mri") -> dict:
    return {
        "medfuse_version": __version__,
        "checkpoint_sha256": checkpoint_sha256,
        "modality_pair": modality_pair,
        "model_config": model_config,
        "preprocess_config": preprocess_config,
        "artifacts": [asdict(r) for r in records],
    }


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    path = Path(folder) / MANIFEST
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def read_manifest(folder: str | Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())
