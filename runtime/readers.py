"""Image readers behind one small interface, chosen by file content first and suffix second.

Each reader says whether it takes a file (`sniff` on the first bytes, `suffixes`) and reads a 2D
image or a volume into a `MedicalImage`. A file no reader takes gets an error naming the formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from . import dicom_read
from .errors import MedfuseError
from .image import MedicalImage

SNIFF_BYTES = 512
# NIfTI has no modality tag. A CT in HU has plenty of air (-1000) around the head; an MRI may dip
# below zero after filtering but never has 1 % of its voxels near -1000.
HU_AIR_THRESHOLD = -900.0
HU_AIR_FRACTION = 1.0  # percent of voxels at or below the threshold


class Reader(Protocol):
    name: str  # as shown to users, e.g. "PNG"
    suffixes: tuple[str, ...]

    def sniff(self, head: bytes) -> bool: ...

    def read(self, path: Path, *, axis: int, slice_index: int | None) -> MedicalImage: ...

    def read_volume(self, path: Path) -> MedicalImage: ...


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


# ---- PNG / JPEG / TIFF through OpenCV -------------------------------------------------------

_BIT_DEPTH = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16, np.dtype(np.float32): 32}


def _to_rgb(raw: np.ndarray) -> np.ndarray:
    if raw.ndim == 2:
        return raw
    if raw.shape[-1] == 1:
        return raw[..., 0]
    code = cv2.COLOR_BGRA2RGB if raw.shape[-1] == 4 else cv2.COLOR_BGR2RGB  # alpha is dropped
    return cv2.cvtColor(raw, code)


@dataclass(frozen=True)
class RasterReader:
    name: str
    format: str
    suffixes: tuple[str, ...]
    signatures: tuple[bytes, ...]

    def sniff(self, head: bytes) -> bool:
        return head.startswith(self.signatures)

    def read(self, path: Path, *, axis: int = 2, slice_index: int | None = None) -> MedicalImage:
        # imdecode from bytes, not imread: imread fails silently on some non-ASCII paths.
        raw = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise MedfuseError(f"could not be decoded as {self.name} (truncated or corrupt file)", path)
        depth = _BIT_DEPTH.get(raw.dtype)
        if depth is None:
            raise MedfuseError(f"has {raw.dtype} samples; supported are 8- and 16-bit integer and 32-bit float", path)
        return MedicalImage(pixels=_to_rgb(raw), path=path, format=self.format, bit_depth=depth)

    def read_volume(self, path: Path) -> MedicalImage:
        raise MedfuseError(f"is a 2D {self.name} image, not a volume (volumes are NIfTI or DICOM series)", path)


PNG = RasterReader("PNG", "png", (".png",), (b"\x89PNG\r\n\x1a\n",))
JPEG = RasterReader("JPEG", "jpeg", (".jpg", ".jpeg"), (b"\xff\xd8\xff",))
TIFF = RasterReader("TIFF", "tiff", (".tif", ".tiff"), (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"))


# ---- DICOM ------------------------------------------------------------------------------------


class DicomReader:
    name = "DICOM"
    suffixes = (".dcm", ".dicom")

    def sniff(self, head: bytes) -> bool:
        return head[128:132] == b"DICM"

    def read(self, path: Path, *, axis: int = 2, slice_index: int | None = None) -> MedicalImage:
        if path.is_dir():
            return dicom_read.read_dicom_series_slice(path, slice_index)
        return dicom_read.read_dicom_file(path, slice_index=slice_index)

    def read_volume(self, path: Path) -> MedicalImage:
        if path.is_dir():
            return dicom_read.read_dicom_series(path)
        return dicom_read.read_dicom_file(path, volume=True)


# ---- NIfTI ------------------------------------------------------------------------------------


def _nifti_header(head: bytes) -> bool:
    for order in ("<", ">"):
        size = np.frombuffer(head[:4], dtype=f"{order}i4")[0] if len(head) >= 4 else 0
        if size == 348 and head[344:347] in (b"n+1", b"ni1") or size == 540 and head[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def _looks_like_hu(data: np.ndarray) -> bool:
    return float(np.percentile(data, HU_AIR_FRACTION)) <= HU_AIR_THRESHOLD


class NiftiReader:
    name = "NIfTI"
    suffixes = (".nii", ".nii.gz")

    def sniff(self, head: bytes) -> bool:
        return _nifti_header(head)  # gzipped NIfTI is taken by its .nii.gz suffix

    def _load(self, path: Path) -> tuple[np.ndarray, object]:
        import nibabel as nib  # noqa: PLC0415 (only NIfTI users pay for the import)

        try:
            img = nib.load(path)
            shape = img.shape
            if len(shape) == 4 and shape[3] == 1:
                shape = shape[:3]
            if len(shape) > 3:
                raise MedfuseError(
                    f"is a {len(shape)}D NIfTI (shape {img.shape}); medfuse reads 2D images and 3D volumes, "
                    "so extract one 3D volume first",
                    path,
                )
            data = np.asanyarray(img.dataobj).reshape(shape)
        except MedfuseError:
            raise
        except Exception as err:  # nibabel and gzip raise many types for broken files
            raise MedfuseError(f"is not a readable NIfTI file ({err.__class__.__name__}: {err})", path) from err
        if data.dtype.names:  # RGB24 / RGBA32 -> trailing colour axis
            data = np.stack([data[c] for c in "RGB"], axis=-1)
            return data.astype(np.float32), img
        return np.asarray(data, dtype=np.float32), img

    def _image(self, path: Path, img, pixels: np.ndarray, full: np.ndarray, **extra) -> MedicalImage:
        rgb = full.ndim == len(img.shape[:3]) + 1 and full.shape[-1] == 3 and full.ndim > 2
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        return MedicalImage(
            pixels=pixels,
            path=path,
            format="nifti",
            is_hu=not rgb and _looks_like_hu(full),
            bit_depth=int(img.header.get_data_dtype().itemsize * 8) if not rgb else 8,
            affine=np.asarray(img.affine, dtype=np.float64),
            spacing=extra.pop("spacing", zooms),
            **extra,
        )

    def read(self, path: Path, *, axis: int = 2, slice_index: int | None = None) -> MedicalImage:
        data, img = self._load(path)
        spatial = len(img.shape[:3]) if len(img.shape) < 4 else 3
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        if spatial == 2:
            return self._image(path, img, data, data, spacing=zooms[:2])
        if axis not in (0, 1, 2):
            raise MedfuseError(f"axis must be 0, 1 or 2 for a 3D NIfTI, got {axis}", path)
        index = dicom_read._check_index(path, slice_index, data.shape[axis])
        pixels = np.take(data, index, axis=axis)
        in_plane = tuple(z for i, z in enumerate(zooms) if i != axis)
        return self._image(path, img, pixels, data, spacing=in_plane, slice_axis=axis, slice_index=index)

    def read_volume(self, path: Path) -> MedicalImage:
        data, img = self._load(path)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        if len(img.shape[:3]) == 2 or (data.ndim == 3 and data.shape[-1] == 3 and len(img.shape) == 2):
            data, zooms = data[:, :, None], (*zooms[:2], 1.0)
        pixels = np.moveaxis(data, 2, 0)  # voxel axis 2 becomes the slice axis D
        spacing = (zooms[2], zooms[0], zooms[1])
        return self._image(path, img, pixels, data, spacing=spacing, slice_axis=2, is_volume=True)


DICOM = DicomReader()
NIFTI = NiftiReader()
# DICOM sniffs first: its 128-byte preamble may itself be a TIFF header (dual-format files).
READERS: tuple[Reader, ...] = (DICOM, NIFTI, PNG, JPEG, TIFF)
SUPPORTED = "PNG, JPEG, TIFF, DICOM (file or series folder), NIfTI (.nii, .nii.gz)"


def find_reader(path: Path) -> Reader:
    """The reader for `path`: a folder is a DICOM series; a file by content, then by suffix."""
    if not path.exists():
        raise MedfuseError("does not exist", path)
    if path.is_dir():
        return DICOM
    if path.stat().st_size == 0:
        raise MedfuseError("is empty (0 bytes)", path)
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    for reader in READERS:
        if reader.sniff(head):
            return reader
    suffix = _suffix(path)
    by_suffix = next((r for r in READERS if suffix in r.suffixes), None)
    if by_suffix is None:
        raise MedfuseError(f"is not an image medfuse can read; supported formats: {SUPPORTED}", path)
    if isinstance(by_suffix, RasterReader):
        raise MedfuseError(f"has a {suffix} name but its content is not {by_suffix.name} (wrong or damaged file)", path)
    return by_suffix  # DICOM without preamble, gzipped NIfTI: the reader itself checks the content
