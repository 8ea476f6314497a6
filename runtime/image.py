"""`MedicalImage`: pixels as float32 plus the metadata later stages need.

Every reader returns one, whatever the file format, so preprocessing and the writers never look
at the file type again: HU windowing needs `is_hu`, the pair check needs `spacing`/`affine`, the
DICOM writer carries patient and study attributes from `datasets`, the NIfTI writer the `affine`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("png", "jpeg", "tiff", "dicom", "nifti")


@dataclass
class MedicalImage:
    """One 2D image, (H, W) gray or (H, W, 3) RGB, or a (D, H, W) volume."""

    pixels: np.ndarray  # float32; raw values (HU for CT DICOM, 0..255 for 8-bit PNG, ...)
    path: Path  # the file or series folder it came from (named in every error)
    format: str  # one of FORMATS
    modality: str | None = None  # DICOM Modality ("CT", "MR", "PT", ...); None when unknown
    is_hu: bool = False  # pixels are Hounsfield units, so CT windowing applies
    spacing: tuple[float, ...] | None = None  # mm per pixel along the pixel axes (row, col) or (slice, row, col)
    bit_depth: int | None = None  # bits per sample in the file (8, 16, ...); None when not meaningful
    datasets: list[Any] | None = None  # DICOM source headers (pydicom.Dataset), one per slice
    affine: np.ndarray | None = None  # NIfTI voxel-to-world 4x4 of the source volume
    nifti_header: Any | None = None  # the source's nibabel header: qform/sform codes, units, description
    slice_axis: int | None = None  # NIfTI voxel axis a 2D image was cut along
    slice_index: int | None = None  # index of that slice (NIfTI voxel index or DICOM series position)
    is_volume: bool = False  # pixels are (D, H, W) slices, not one (H, W[, 3]) image
    # A volume's display range (low, high) that each of its slices keeps, so that a functional
    # volume without SUV is scaled alike on every slice (runtime/functional.py); None: the image's own.
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.pixels.dtype != np.float32:
            self.pixels = self.pixels.astype(np.float32)
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")

    @property
    def is_rgb(self) -> bool:
        return not self.is_volume and self.pixels.ndim == 3 and self.pixels.shape[-1] == 3

    @property
    def height_width(self) -> tuple[int, int]:
        """(H, W) of one 2D image or of each slice of a volume."""
        return tuple(self.pixels.shape[1:3]) if self.is_volume else tuple(self.pixels.shape[:2])

    @property
    def depth(self) -> int:
        return self.pixels.shape[0] if self.is_volume else 1

    def slice(self, index: int) -> MedicalImage:
        """One slice of a volume as a 2D image that keeps the metadata of its source slice."""
        if not self.is_volume:
            raise ValueError(f"{self.path} is a 2D image, not a volume")
        if not -self.depth <= index < self.depth:
            raise IndexError(f"slice {index} is outside 0..{self.depth - 1} of {self.path}")
        index %= self.depth
        datasets = self.datasets
        if datasets and len(datasets) == self.depth:  # one header per slice (a series), else one multi-frame header
            datasets = [datasets[index]]
        spacing = self.spacing[1:] if self.spacing and len(self.spacing) == 3 else self.spacing
        axis = self.slice_axis if self.format == "nifti" else None
        return replace(
            self,
            pixels=self.pixels[index],
            spacing=spacing,
            datasets=datasets,
            slice_axis=axis,
            slice_index=index,
            is_volume=False,
        )
