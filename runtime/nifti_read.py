"""NIfTI reading through nibabel: a 2D image, one slice of a 3D volume, or the whole volume.

Slices are taken in voxel order (no reorientation), so writing a result back with the same
affine puts every pixel where it came from. 4D files (time series) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MedfuseError
from .image import MedicalImage

# NIfTI has no modality tag. A CT in HU has plenty of air (-1000) around the head; an MRI may dip
# below zero after filtering but never has 1 % of its voxels near -1000.
HU_AIR_THRESHOLD = -900.0
HU_AIR_PERCENT = 1.0


@dataclass(frozen=True)
class _Nifti:
    data: np.ndarray  # float32, spatial axes (2 or 3) then an RGB axis for colour files
    affine: np.ndarray
    zooms: tuple[float, ...]  # mm per voxel along each spatial axis
    rgb: bool
    bit_depth: int
    header: Any = None  # nibabel's header, for the writer to give the output the same codes and units

    @property
    def spatial(self) -> int:
        return self.data.ndim - (1 if self.rgb else 0)

    def image(self, path: Path, pixels: np.ndarray, spacing: tuple[float, ...], **extra) -> MedicalImage:
        hu = not self.rgb and float(np.percentile(self.data, HU_AIR_PERCENT)) <= HU_AIR_THRESHOLD
        return MedicalImage(
            pixels=pixels, path=path, format="nifti", is_hu=hu, bit_depth=self.bit_depth,
            affine=self.affine, spacing=spacing, nifti_header=self.header, **extra,
        )


def _spatial_shape(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]  # a trailing singleton time axis is still one volume
    if len(shape) > 3:
        raise MedfuseError(
            f"is a {len(shape)}D NIfTI (shape {shape}); medfuse reads 2D images and 3D volumes, "
            "so extract one 3D volume first",
            path,
        )
    return shape


def _load(path: Path) -> _Nifti:
    import nibabel as nib  # noqa: PLC0415 (only NIfTI users pay for the import)

    try:
        img = nib.load(path)
        shape = _spatial_shape(img.shape, path)
        raw = np.asanyarray(img.dataobj).reshape(shape)
    except MedfuseError:
        raise
    except Exception as err:  # nibabel and gzip raise many types for broken files
        raise MedfuseError(f"is not a readable NIfTI file ({err.__class__.__name__}: {err})", path) from err
    rgb = raw.dtype.names is not None  # RGB24 / RGBA32 are structured dtypes
    data = np.stack([raw[c] for c in "RGB"], axis=-1) if rgb else raw
    zooms = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
    depth = 8 if rgb else int(img.header.get_data_dtype().itemsize * 8)
    return _Nifti(data.astype(np.float32), np.asarray(img.affine, dtype=np.float64), zooms, rgb, depth,
                  img.header.copy())


def read_nifti(path: Path, *, axis: int = 2, slice_index: int | None = None) -> MedicalImage:
    """A 2D NIfTI as it is, or slice `slice_index` (default: the middle) along voxel `axis` of a 3D one."""
    nifti = _load(path)
    if nifti.spatial == 2:
        if slice_index not in (None, 0):
            raise MedfuseError(f"is a 2D NIfTI image; it has no slice {slice_index}", path)
        return nifti.image(path, nifti.data, nifti.zooms)
    if axis not in (0, 1, 2):
        raise MedfuseError(f"axis must be 0, 1 or 2 for a 3D NIfTI, got {axis}", path)
    depth = nifti.data.shape[axis]
    index = depth // 2 if slice_index is None else slice_index
    if not 0 <= index < depth:
        raise MedfuseError(f"slice {index} is out of range; axis {axis} has {depth} slices (0..{depth - 1})", path)
    in_plane = tuple(z for i, z in enumerate(nifti.zooms) if i != axis)
    pixels = np.take(nifti.data, index, axis=axis)
    return nifti.image(path, pixels, in_plane, slice_axis=axis, slice_index=index)


def read_nifti_volume(path: Path) -> MedicalImage:
    """The volume as (D, H, W[, 3]) with voxel axis 2 as D; a 2D file is a volume of one slice."""
    nifti = _load(path)
    data, zooms = nifti.data, nifti.zooms
    if nifti.spatial == 2:
        data, zooms = np.expand_dims(data, 2), (*zooms, 1.0)
    spacing = (zooms[2], zooms[0], zooms[1])
    return nifti.image(path, np.moveaxis(data, 2, 0), spacing, slice_axis=2, is_volume=True)
