"""PNG and NIfTI writers. Every write goes through `atomic_output` (no half-written files)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_output
from .dicom_frames import POSITION_TOLERANCE_MM, slice_plane, slice_positions
from .errors import MedfuseError
from .image import MedicalImage

RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 passes through; floats are taken as [0, 1], clipped and rounded."""
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected uint8 or float [0, 1] pixels, got {image.dtype}")
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_2d(image: np.ndarray) -> None:
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise ValueError(f"expected a gray (H, W) or RGB (H, W, 3) image, got shape {image.shape}")


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an 8-bit gray or RGB PNG from uint8 or float [0, 1] pixels."""
    _check_2d(image)
    pixels = to_uint8(image)
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)  # OpenCV stores BGR
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise MedfuseError("OpenCV could not encode the PNG", path)
    with atomic_output(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return Path(path)


def write_nifti_array(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, source_header=None,
                      shift: np.ndarray | None = None) -> Path:
    """Write voxel data (RGB as a trailing axis of 3 uint8, stored as NIfTI RGB24) with an affine.

    With the `source_header` of a NIfTI input, the output keeps its qform and sform with their
    codes (a scanner qform beside an MNI sform stays so), its spatial and time units and (after a
    'medfuse fusion' prefix) its description; `shift` moves both transforms to one slice.
    """
    import nibabel as nib  # noqa: PLC0415 (only NIfTI users pay for the import)

    if data.dtype == np.uint8 and data.ndim == 4 and data.shape[-1] == 3:
        data = np.ascontiguousarray(data).view(RGB24)[..., 0]
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    if source_header is None:
        image.set_qform(image.affine, code=1)
        image.set_sform(image.affine, code=1)
    else:
        _carry_header(image, source_header, np.eye(4) if shift is None else shift)
    with atomic_output(path) as tmp:
        nib.save(image, tmp)
    return Path(path)


def _carry_header(image, source, shift: np.ndarray) -> None:
    for getter, setter in ((source.get_qform, image.set_qform), (source.get_sform, image.set_sform)):
        transform, code = getter(coded=True)
        setter(None if transform is None else transform @ shift, code=int(code))
    image.header.set_xyzt_units(*source.get_xyzt_units())
    described = bytes(source["descrip"]).split(b"\0")[0].decode("latin-1", "replace")
    image.header["descrip"] = ("medfuse fusion" + (f"; {described}" if described else ""))[:79]


def _slice_shift(axis: int, index: int) -> np.ndarray:
    """Voxel translation to the one-slice volume holding voxel slice `index` along `axis` (the
    affine of that volume is the source's times this)."""
    shift = np.eye(4)
    shift[axis, 3] = index
    return shift


def dicom_affine(reference: MedicalImage) -> np.ndarray | None:
    """RAS affine for voxel order (row, col, slice) from the plane of the first slice (a classic
    series' first file, an enhanced file's first frame); None without a position. Refuses slices
    no affine places (MedfuseError), so callers can ask before fusing a whole volume."""
    plane = slice_plane(reference)
    if plane is None or plane.position is None or not reference.spacing:
        return None
    d_row, d_col = reference.spacing[-2:]
    row_dir, col_dir = plane.orientation[:3], plane.orientation[3:]
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = col_dir * d_row, row_dir * d_col  # row index moves along the column direction
    lps[:3, 2] = plane.normal * _slice_step(reference)
    lps[:3, 3] = plane.position
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS, nibabel's convention


def _slice_step(reference: MedicalImage) -> float:
    """Signed mm from one slice to the next along the normal, from the slices' positions: a series
    is read in position order, but an enhanced file may store its frames head or feet first (or
    out of order, which one affine cannot place: refused). Slices without a position are skipped."""
    if not reference.is_volume or not reference.spacing or len(reference.spacing) != 3:
        return 1.0
    known = [(k, p) for k, p in enumerate(slice_positions(reference) or []) if p is not None]
    steps = [(p2 - p1) / (k2 - k1) for (k1, p1), (k2, p2) in zip(known, known[1:])]
    if not steps:
        return reference.spacing[0]
    step = float(np.median(steps))
    if abs(step) <= POSITION_TOLERANCE_MM or any(abs(s - step) > max(0.01 * abs(step), 0.05) for s in steps):
        raise MedfuseError(f"its slices are not evenly spaced along one direction ({min(steps):.2f} to "
                           f"{max(steps):.2f} mm from slice to slice), so no NIfTI affine places them; "
                           "write a DICOM series instead", reference.path)
    return step


def _spacing_affine(reference: MedicalImage | None) -> np.ndarray:
    spacing = list(reference.spacing) if reference is not None and reference.spacing else []
    if reference is not None and reference.is_volume and len(spacing) == 3:
        spacing = spacing[1:] + spacing[:1]  # (slice, row, col) -> voxel order (row, col, slice)
    spacing = (spacing + [1.0, 1.0, 1.0])[:3]
    return np.diag([*spacing, 1.0])


def write_nifti(path: str | os.PathLike, volume: np.ndarray, reference: MedicalImage | None) -> Path:
    """Write a (D, H, W[, 3]) volume or one (H, W[, 3]) slice in the reference's geometry.

    A NIfTI reference gives its affine back unchanged (a slice lands at its own voxel index);
    a DICOM reference gives the affine of its image plane; otherwise the pixel spacing.
    """
    rgb = volume.ndim in (3, 4) and volume.shape[-1] == 3 and volume.dtype == np.uint8
    single = volume.ndim == (3 if rgb else 2)
    stack = volume[None] if single else volume
    if reference is not None and reference.format == "nifti" and reference.affine is not None:
        axis = reference.slice_axis if reference.slice_axis is not None else 2
        shift = np.eye(4)
        if single and reference.slice_index is not None:
            shift = _slice_shift(axis, reference.slice_index)
        data = np.moveaxis(stack, 0, axis)
        return write_nifti_array(path, np.ascontiguousarray(data), reference.affine @ shift,
                                 reference.nifti_header, shift)
    affine = dicom_affine(reference) if reference is not None else None
    affine = _spacing_affine(reference) if affine is None else affine
    data = np.moveaxis(stack, 0, 2)
    return write_nifti_array(path, np.ascontiguousarray(data), affine)
