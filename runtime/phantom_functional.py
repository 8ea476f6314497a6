"""Synthetic PET/SPECT-MRI phantoms: the head of runtime/phantom.py seen by a tracer, in pseudo-colour.

The uptake map is drawn from the same 3D shapes as the MRI, so the pair is registered by
construction: FDG-like uptake (grey matter high, white matter lower, CSF and bone none) and a
hot lesion, blurred to PET resolution, then drawn through an OpenCV colour map with black where
there is no tracer, as the Harvard PET/SPECT images are.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .color import colorize
from .phantom import CSF, GREY, OEDEMA, SCALP, WHITE, _anatomy, _labels, make_phantom_pair, phantom_slice_positions

# Relative tracer uptake per tissue; anything else (air, skull, calcification) takes none.
UPTAKE = {SCALP: 0.08, GREY: 0.75, WHITE: 0.35, CSF: 0.03, OEDEMA: 1.0}


def uptake_map(size: int = 256, seed: int = 0, slice_pos: float = 0.5) -> np.ndarray:
    """(size, size) float32 uptake in [0, 1], blurred to a functional scanner's resolution."""
    uptake = np.zeros((size, size), np.float32)
    for mask, values in _labels(size, slice_pos, _anatomy(seed)):
        uptake[mask] = UPTAKE.get(values, 0.0)
    return np.clip(cv2.GaussianBlur(uptake, (0, 0), max(size / 80.0, 0.8)), 0.0, 1.0)


def make_functional_pair(size: int = 256, seed: int = 0, slice_pos: float = 0.5,
                         colormap: str = "hot") -> tuple[np.ndarray, np.ndarray]:
    """One registered (functional RGB float32 (size, size, 3) in [0, 1], MRI float32 (size, size)) pair."""
    uptake = uptake_map(size, seed, slice_pos)
    rgb = colorize(uptake, colormap) * (uptake > 0.02)[..., None]  # black outside the tracer
    _, mri = make_phantom_pair(size, seed, slice_pos)
    return rgb.astype(np.float32), mri


def write_functional_dataset(out_dir: str | os.PathLike, n_cases: int = 2, slices_per_case: int = 2,
                             size: int = 256, seed: int = 0, folder: str = "PET", colormap: str = "hot") -> Path:
    """PET/CCSSS.png (8-bit RGB pseudo-colour; or SPECT/) and MRI/CCSSS.png, the Harvard PET-MRI layout."""
    from .writers import write_png  # noqa: PLC0415

    out = Path(out_dir)
    for case in range(1, n_cases + 1):
        for index, pos in enumerate(phantom_slice_positions(slices_per_case), start=1):
            rgb, mri = make_functional_pair(size, seed * 1000 + case, pos, colormap)
            name = f"{case:02d}{index:03d}.png"
            write_png(out / folder / name, rgb)
            write_png(out / "MRI" / name, np.clip(mri, 0.0, 1.0))
    return out
