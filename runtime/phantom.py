"""Deterministic synthetic head phantoms: registered CT (in HU) and MRI (T2-like) pairs.

The demo and the tests use them so that no patient data is ever needed or committed. Both
images are drawn from one set of 3D shapes (ellipsoids cut at `slice_pos`), so they are
registered by construction: bright skull and calcifications in CT; grey/white matter, bright CSF
and an oedema-like lesion in MRI, with a dark skull.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Tissue values: CT in Hounsfield units, MRI as T2-like relative signal in [0, 1].
AIR = (-1000.0, 0.0)
SCALP = (40.0, 0.35)
SKULL = (1300.0, 0.04)
GREY = (40.0, 0.6)
WHITE = (25.0, 0.42)
CSF = (5.0, 0.95)
OEDEMA = (18.0, 0.85)
CALCIFICATION = (700.0, 0.08)

TEXTURE_HU, TEXTURE_MRI = 6.0, 0.05  # amplitude of the smooth heterogeneity inside the brain

PHANTOM_FORMATS = ("png", "dicom", "nifti")


@dataclass(frozen=True)
class _Anatomy:
    """The random but fixed (per seed) 3D layout of one phantom head, in units of the half-field."""

    head: tuple[float, float]  # semi-axes (x, y) of the outer head
    tilt: float  # rotation of the head in the image plane, radians
    gyri: tuple[float, float]  # number and depth of the cortical folds
    lesion: tuple[float, float, float, float]  # oedema sphere: x, y, z (slice position), radius
    calcs: tuple[tuple[float, float, float, float, float], ...]  # x, y, z, radius, HU


def _anatomy(seed: int) -> _Anatomy:
    rng = np.random.default_rng(seed)
    angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.45)
    lesion = (dist * np.cos(angle), dist * np.sin(angle), rng.uniform(0.35, 0.65), rng.uniform(0.14, 0.22))
    calcs = [(0.0, 0.08, 0.5, 0.035, 900.0)]  # pineal-like, on the midline
    for _ in range(int(rng.integers(2, 5))):
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.55)
        calcs.append((d * np.cos(a), d * np.sin(a), rng.uniform(0.3, 0.7), rng.uniform(0.02, 0.04), rng.uniform(300, 900)))
    return _Anatomy(
        head=(rng.uniform(0.78, 0.86), rng.uniform(0.88, 0.95)),
        tilt=rng.uniform(-0.12, 0.12),
        gyri=(float(rng.integers(9, 15)), rng.uniform(0.03, 0.05)),
        lesion=lesion,
        calcs=tuple(calcs),
    )


def _grid(size: int, tilt: float) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(coords, coords, indexing="ij")
    c, s = np.cos(tilt), np.sin(tilt)
    return c * x + s * y, -s * x + c * y


def _ellipse(x: np.ndarray, y: np.ndarray, a: float, b: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def _sphere_cut(z: float, zc: float, radius: float) -> float:
    """Radius of a sphere's cross-section at slice position z (0 when the slice misses it)."""
    return float(np.sqrt(max(radius**2 - (z - zc) ** 2, 0.0)))


def _labels(size: int, slice_pos: float, anatomy: _Anatomy) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """Masks painted in order (later wins), each with its (CT HU, MRI) value."""
    x, y = _grid(size, anatomy.tilt)
    z = float(np.clip(slice_pos, 0.0, 1.0))
    taper = 0.55 + 0.45 * np.sqrt(max(1.0 - (2.0 * z - 1.0) ** 2, 0.0))  # the head narrows towards the top/bottom
    ax, ay = anatomy.head[0] * taper, anatomy.head[1] * taper
    theta = np.arctan2(y, x)
    folds = 1.0 + anatomy.gyri[1] * np.sin(anatomy.gyri[0] * theta)
    layers = [
        (_ellipse(x, y, ax, ay), SCALP),
        (_ellipse(x, y, ax * 0.95, ay * 0.95), SKULL),
        (_ellipse(x, y, ax * 0.87, ay * 0.88), GREY),
        (_ellipse(x / folds, y / folds, ax * 0.72, ay * 0.74), WHITE),
    ]
    vent = 0.5 * np.exp(-(((z - 0.5) / 0.18) ** 2))  # ventricles are largest mid-head
    if vent > 0.05:
        for side in (-1.0, 1.0):
            layers.append((_ellipse(x, y, 0.07 * vent * 2, 0.22 * vent * 2, side * 0.09, -0.05), CSF))
    lx, ly, lz, lr = anatomy.lesion
    r = _sphere_cut(z, lz, lr)
    if r > 0:
        layers.append((_ellipse(x, y, r, r * 0.85, lx * taper, ly * taper), OEDEMA))
    for cx, cy, cz, cr, hu in anatomy.calcs:
        r = _sphere_cut(z, cz, cr * 3.0) / 3.0  # small, but visible over several slices
        if r > 0:
            layers.append((_ellipse(x, y, r, r, cx * taper, cy * taper), (hu, CALCIFICATION[1])))
    return layers


def _texture(size: int, seed: int, slice_pos: float) -> np.ndarray:
    """Smooth tissue heterogeneity in [-1, 1], shared by CT and MRI, drifting with the slice."""
    rng = np.random.default_rng([seed, 7])
    coarse = rng.uniform(-1.0, 1.0, (2, 12, 12)).astype(np.float32)
    angle = np.pi / 2 * float(np.clip(slice_pos, 0.0, 1.0))
    field = np.cos(angle) * coarse[0] + np.sin(angle) * coarse[1]
    return np.clip(cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)


def make_phantom_pair(
    size: int = 256, seed: int = 0, slice_pos: float = 0.5, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """One registered (CT in HU, MRI in [0, 1]) pair, both float32 (size, size).

    `seed` fixes the head (lesion, calcifications, folds); `slice_pos` in [0, 1] moves through it;
    `noise` adds Gaussian noise with that standard deviation as a fraction of each image's range
    (CT range taken as 2000 HU).
    """
    if size < 16:
        raise ValueError(f"phantom size must be at least 16, got {size}")
    ct = np.full((size, size), AIR[0], np.float32)
    mri = np.full((size, size), AIR[1], np.float32)
    brain = np.zeros((size, size), bool)
    for mask, (hu, signal) in _labels(size, slice_pos, _anatomy(seed)):
        ct[mask], mri[mask] = hu, signal
        brain[mask] = (hu, signal) in (GREY, WHITE)
    texture = _texture(size, seed, slice_pos) * brain
    ct, mri = ct + texture * TEXTURE_HU, mri + texture * TEXTURE_MRI
    # A slight blur stands in for the scanner's point spread, so edges are not one-pixel steps.
    sigma = max(size / 400.0, 0.5)
    ct, mri = (cv2.GaussianBlur(img, (0, 0), sigma) for img in (ct, mri))
    if noise > 0:
        rng = np.random.default_rng([seed, int(round(slice_pos * 1e6))])
        ct = ct + rng.normal(0.0, noise * 2000.0, ct.shape).astype(np.float32)
        mri = np.clip(mri + rng.normal(0.0, noise, mri.shape).astype(np.float32), 0.0, None)
    return ct.astype(np.float32), mri.astype(np.float32)


def phantom_slice_positions(slices_per_case: int) -> list[float]:
    """Slice positions spread over the middle of the head, where the anatomy is richest."""
    if slices_per_case == 1:
        return [0.5]
    return [float(p) for p in np.linspace(0.3, 0.7, slices_per_case)]


def phantom_case(case: int, slices_per_case: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(D, H, W) CT (HU) and MRI volumes of one phantom case."""
    pairs = [make_phantom_pair(size, seed * 1000 + case, p) for p in phantom_slice_positions(slices_per_case)]
    return np.stack([c for c, _ in pairs]), np.stack([m for _, m in pairs])


def write_phantom_dataset(
    out_dir: str | os.PathLike,
    n_cases: int = 3,
    slices_per_case: int = 4,
    size: int = 256,
    fmt: str = "png",
    seed: int = 0,
) -> Path:
    """Write a phantom dataset laid out like the Harvard folders; return `out_dir`.

    png:   CT/CCSSS.png (8-bit, windowed with the default 40/400 HU) and MRI/CCSSS.png (8-bit).
    dicom: CT/CC/CCSSS.dcm (a CT series in HU through RescaleIntercept) and MRI/CC/CCSSS.dcm.
    nifti: CT/CC.nii.gz (int16 HU) and MRI/CC.nii.gz (float32), slices along voxel axis 2.
    CC is the two-digit case number (from 01), SSS the slice number (from 001).
    """
    from . import phantom_writers  # noqa: PLC0415 (the writers pull in pydicom and nibabel)

    if fmt not in PHANTOM_FORMATS:
        raise ValueError(f"fmt must be one of {PHANTOM_FORMATS}, got {fmt!r}")
    if not 1 <= n_cases <= 99:
        raise ValueError(f"n_cases must be 1..99 (two-digit case numbers), got {n_cases}")
    out = Path(out_dir)
    for case in range(1, n_cases + 1):
        ct, mri = phantom_case(case, slices_per_case, size, seed)
        phantom_writers.WRITERS[fmt](out, case, ct, mri)
    return out
