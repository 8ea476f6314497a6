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

from . import dicom_read, nifti_read
from .errors import MedfuseError
from .image import MedicalImage

SNIFF_BYTES = 512


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
        if slice_index is not None:
            raise MedfuseError(f"is a 2D {self.name} image; --slice picks a slice of a NIfTI volume or DICOM series",
                               path)
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


class NiftiReader:
    name = "NIfTI"
    suffixes = (".nii", ".nii.gz")

    def sniff(self, head: bytes) -> bool:
        return _nifti_header(head)  # gzipped NIfTI is taken by its .nii.gz suffix

    def read(self, path: Path, *, axis: int = 2, slice_index: int | None = None) -> MedicalImage:
        return nifti_read.read_nifti(path, axis=axis, slice_index=slice_index)

    def read_volume(self, path: Path) -> MedicalImage:
        return nifti_read.read_nifti_volume(path)


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
