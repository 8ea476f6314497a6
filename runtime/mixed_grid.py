"""A pair of one DICOM and one NIfTI image: do their pixel grids lie alike in the patient?

The DICOM reader returns rows and columns as stored, the NIfTI reader voxel order as stored, and
medfuse reorients neither: the same anatomy from both (dcm2niix writes columns first) comes out
transposed or mirrored. Each grid is mapped into DICOM's patient space (LPS; NIfTI affines are
RAS) and a pair whose grids differ is refused, saying how.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dicom_frames import slice_plane
from .errors import MedfuseError
from .image import MedicalImage

DIRECTION_TOLERANCE = 1e-3  # direction cosines that agree within this are one direction
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])  # NIfTI world is RAS, DICOM's LPS
FORMAT_NAMES = {"dicom": "DICOM", "nifti": "NIfTI"}


@dataclass(frozen=True)
class _PatientGrid:
    """A 2D image's pixel grid in the patient (LPS, mm): unit directions of increasing row index
    (down) and column index (right), and the centre of pixel [0, 0] when known."""

    down: np.ndarray
    right: np.ndarray
    origin: np.ndarray | None


def is_mixed_pair(ct: MedicalImage, mri: MedicalImage) -> bool:
    """One image read from DICOM and the other from NIfTI."""
    return {ct.format, mri.format} == {"dicom", "nifti"}


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-6 else None


def _dicom_grid(img: MedicalImage) -> _PatientGrid | None:
    """The DICOM reader's (row, col) array: the row index moves along the column direction
    cosines (IOP[3:]), the column index along the row cosines (IOP[:3]), as `dicom_affine` has it."""
    plane = slice_plane(img)
    down, right = (None, None) if plane is None else (_unit(plane.orientation[3:]), _unit(plane.orientation[:3]))
    if down is None or right is None:
        return None
    return _PatientGrid(down, right, plane.position)


def _nifti_has_affine(img: MedicalImage) -> bool:
    """An affine that places voxels in a world: given, and (with a header) a qform or sform code
    above 0. With both codes 0 nibabel makes one up from the zooms, which says nothing about
    orientation."""
    if img.affine is None or not np.isfinite(img.affine).all():
        return False
    header = img.nifti_header
    if header is None or not hasattr(header, "get_sform"):
        return True  # set by the caller, not read from a file: take it as meant
    return any(int(getter(coded=True)[1]) > 0 for getter in (header.get_sform, header.get_qform))


def _nifti_grid(img: MedicalImage) -> _PatientGrid | None:
    """The NIfTI reader's array: a 2D file's voxel axes (0, 1), or a slice along `slice_axis` with
    the other two voxel axes in order (`read_nifti`, `MedicalImage.slice`); nothing reoriented."""
    if not _nifti_has_affine(img):
        return None
    voxel = np.zeros(3)
    in_plane = (0, 1)
    if img.slice_axis is not None:
        in_plane = tuple(a for a in range(3) if a != img.slice_axis)
        voxel[img.slice_axis] = img.slice_index or 0
    linear, shift = img.affine[:3, :3], img.affine[:3, 3]
    down, right = (_unit(LPS_FROM_RAS @ linear[:, a]) for a in in_plane)
    if down is None or right is None:
        return None  # a degenerate affine places nothing
    return _PatientGrid(down, right, LPS_FROM_RAS @ (linear @ voxel + shift))


def _along(a: np.ndarray, b: np.ndarray) -> int:
    """1 when unit vectors a and b agree, -1 when opposite, 0 otherwise."""
    for sign in (1, -1):
        if np.allclose(a, sign * b, atol=DIRECTION_TOLERANCE):
            return sign
    return 0


def _misplacement(dicom: _PatientGrid, nifti: _PatientGrid, d_role: str, n_role: str,
                  tolerance_mm: float) -> str | None:
    """How the NIfTI's grid differs from the DICOM's, in words; None when they coincide."""
    kept = (_along(nifti.down, dicom.down), _along(nifti.right, dicom.right))
    swapped = (_along(nifti.down, dicom.right), _along(nifti.right, dicom.down))
    if all(swapped):
        mirrored = ", and mirrored" if -1 in swapped else ""
        return f"the {n_role}'s rows run along the {d_role}'s columns (transposed{mirrored})"
    if not all(kept):
        return f"the {n_role}'s rows and columns run in other directions than the {d_role}'s (another plane?)"
    if -1 in kept:
        flips = " and ".join(name for name, sign in zip(("up-down", "left-right"), kept) if sign < 0)
        return f"the {n_role} is the {d_role} mirrored {flips}"
    if dicom.origin is None:
        return None  # a DICOM without ImagePositionPatient: its place is not judged (as for two DICOMs)
    distance = float(np.linalg.norm(nifti.origin - dicom.origin))
    if distance > tolerance_mm:
        return (f"the {n_role}'s first pixel lies {distance:.1f} mm from the {d_role}'s "
                "(another slice or a shifted grid)")
    return None


def check_mixed_placement(ct: MedicalImage, mri: MedicalImage) -> None:
    """One DICOM and one NIfTI 2D image: their pixel grids must lie alike in the patient.

    The NIfTI reader keeps voxel order and the DICOM reader row/column order, so the same anatomy
    from dcm2niix (or saved from a DICOM array with a made-up RAS affine) comes out transposed or
    mirrored; medfuse does not reorient, so such a pair is refused. Where either image has no
    geometry to compare (a DICOM without ImageOrientationPatient, such as a secondary capture; a
    NIfTI whose qform and sform codes are 0) the pair is refused too: nothing says its axes agree,
    and a silently turned MRI is worse than an error. Pairs of one format or with a PNG pass.
    """
    if not is_mixed_pair(ct, mri):
        return
    roles = (("CT", ct), ("MRI", mri))
    (d_role, d_img), (n_role, n_img) = roles if ct.format == "dicom" else roles[::-1]
    dicom, nifti = _dicom_grid(d_img), _nifti_grid(n_img)
    if dicom is None:
        what = (f"the {d_role} has no ImageOrientationPatient (a secondary capture?), so nothing says its rows and "
                f"columns are the {n_role}'s voxel axes")
    elif nifti is None:
        what = (f"the {n_role} has no usable affine (no qform or sform), so nothing says its voxel axes are "
                f"the {d_role}'s rows and columns")
    else:
        pixel = [s for img in (ct, mri) for s in (img.spacing or ())[-2:] if s > 0]
        what = _misplacement(dicom, nifti, d_role, n_role, 0.5 * min(pixel, default=1.0))
    if what is not None:
        raise MedfuseError(
            f"CT {ct.path} ({FORMAT_NAMES[ct.format]}) and MRI {mri.path} ({FORMAT_NAMES[mri.format]}) do not lie on "
            f"one pixel grid in the patient: {what}; medfuse does not reorient or resample, so convert both with the "
            "same tool (e.g. both to NIfTI with dcm2niix)"
        )
