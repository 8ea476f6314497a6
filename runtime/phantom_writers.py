"""Write one phantom case in each supported format (used by `phantom.write_phantom_dataset`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .phantom_dicom import PHANTOM_SPACING_MM, write_phantom_series
from .preprocess import CT_WINDOW_PRESETS, window_ct
from .writers import write_nifti_array, write_png


def _png(out: Path, case: int, ct: np.ndarray, mri: np.ndarray) -> None:
    center, width = CT_WINDOW_PRESETS["default"]
    for index, (ct_hu, mri_slice) in enumerate(zip(ct, mri, strict=True), start=1):
        name = f"{case:02d}{index:03d}.png"
        write_png(out / "CT" / name, window_ct(ct_hu, center, width))  # windowed 8-bit, like Harvard
        write_png(out / "MRI" / name, np.clip(mri_slice, 0.0, 1.0))


def _dicom(out: Path, case: int, ct: np.ndarray, mri: np.ndarray) -> None:
    write_phantom_series(out / "CT" / f"{case:02d}", ct, modality="CT", case=case)
    write_phantom_series(out / "MRI" / f"{case:02d}", mri, modality="MR", case=case)


def _nifti(out: Path, case: int, ct: np.ndarray, mri: np.ndarray) -> None:
    affine = np.diag([*PHANTOM_SPACING_MM, 1.0])
    # (D, H, W) -> voxel order (H, W, D): slice k along axis 2 is the phantom slice k.
    write_nifti_array(out / "CT" / f"{case:02d}.nii.gz", np.moveaxis(np.round(ct), 0, -1).astype(np.int16), affine)
    write_nifti_array(out / "MRI" / f"{case:02d}.nii.gz", np.moveaxis(mri, 0, -1).astype(np.float32), affine)


WRITERS = {"png": _png, "dicom": _dicom, "nifti": _nifti}
