"""Reading and writing medical images: the one entry point for every part of medfuse.

    read_image(path)   -> one 2D MedicalImage (a NIfTI or DICOM-series slice when given a volume)
    read_volume(path)  -> a (D, H, W) MedicalImage from a 3D NIfTI or a DICOM series folder
    write_png / write_nifti / write_dicom_secondary_capture / write_dicom_series (all atomic)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dicom_read import read_dicom_stack
from .dicom_write import SeriesLabel, write_dicom_secondary_capture, write_dicom_series
from .errors import MedfuseError
from .image import MedicalImage
from .readers import DICOM, NIFTI, SUPPORTED, find_reader
from .writers import write_nifti, write_png

__all__ = [
    "SeriesLabel",
    "SUPPORTED",
    "check_finite",
    "MedicalImage",
    "read_image",
    "read_volume",
    "write_dicom_secondary_capture",
    "write_dicom_series",
    "write_nifti",
    "write_png",
]


def read_image(path: str | os.PathLike, *, axis: int = 2, slice_index: int | None = None) -> MedicalImage:
    """Read one 2D image. For a 3D NIfTI, the slice `slice_index` (default: the middle one) along
    voxel `axis`; for a DICOM series folder or multi-frame file, that slice in slice order."""
    path = Path(path)
    return check_finite(find_reader(path).read(path, axis=axis, slice_index=slice_index))


def read_volume(path: str | os.PathLike) -> MedicalImage:
    """Read a 3D volume, (D, H, W) with D along NIfTI voxel axis 2 or in DICOM slice order."""
    path = Path(path)
    return check_finite(find_reader(path).read_volume(path))


def read_stack(path: str | os.PathLike) -> MedicalImage:
    """Every slice a source holds, as training and the benchmarks take it: a volume for a NIfTI
    file, a DICOM series folder or a multi-frame (enhanced) DICOM file; else the 2D image."""
    path = Path(path)
    reader = find_reader(path)
    if path.is_dir() or reader is NIFTI:
        return check_finite(reader.read_volume(path))
    if reader is DICOM:
        return check_finite(read_dicom_stack(path))
    return check_finite(reader.read(path, axis=2, slice_index=None))


def check_finite(img: MedicalImage) -> MedicalImage:
    """Refuse NaN/Inf pixels (float TIFF, NIfTI masked with NaN): every later step would turn them
    into black or into garbage without a word."""
    bad = int(img.pixels.size - np.count_nonzero(np.isfinite(img.pixels)))
    if bad:
        raise MedfuseError(f"{bad} of {img.pixels.size} pixel values are NaN or infinite; replace them "
                           "(e.g. by the background value) before fusing", img.path)
    return img
