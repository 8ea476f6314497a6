"""SHA-256 of files: checkpoints, ONNX files and engines are identified by it in every manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex digest, read in 1 MiB blocks (checkpoints of the full model are about 0.66 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
