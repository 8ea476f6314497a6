"""Bad input: each case is one MedfuseError that names the file (or is handled correctly)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import nibabel
import numpy as np
import pydicom
import pydicom.data
import pytest

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.io import read_image, read_volume

NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"


def _png(path: Path, pixels: np.ndarray) -> Path:
    cv2.imwrite(str(path), pixels)
    return path


def _raises(path: Path, fragment: str, read=read_image) -> MedfuseError:
    with pytest.raises(MedfuseError) as info:
        read(path)
    assert str(path) in str(info.value) and fragment in str(info.value)
    assert info.value.path == path
    return info.value


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.png", "does not exist")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    _raises(tmp_path / "empty.png", "empty")


def test_truncated_png(tmp_path):
    data = _png(tmp_path / "full.png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _raises(tmp_path / "cut.png", "truncated or corrupt")


def test_text_file_with_png_extension(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all\n")
    _raises(tmp_path / "notes.png", "content is not PNG")


def test_unknown_format_names_the_supported_ones(tmp_path):
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    err = _raises(tmp_path / "table.csv", "supported formats")
    for name in ("PNG", "JPEG", "TIFF", "DICOM", "NIfTI"):
        assert name in str(err)


def test_dicom_without_pixel_data(tmp_path):
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "header_only.dcm")
    _raises(tmp_path / "header_only.dcm", "without pixel data")


def test_truncated_dicom_pixel_data(tmp_path):
    data = Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 5000])
    with pytest.raises(MedfuseError, match="cut.dcm"):
        read_image(tmp_path / "cut.dcm")
    _raises(Path(pydicom.data.get_testdata_file("MR_truncated.dcm")), "cannot be decoded")


def test_4d_nifti_is_refused():
    _raises(NIBABEL_DATA / "example4d.nii.gz", "4D NIfTI")


def test_slice_out_of_range():
    with pytest.raises(MedfuseError, match="out of range"):
        read_image(NIBABEL_DATA / "anatomical.nii", slice_index=10_000)


def test_empty_series_folder(tmp_path):
    (tmp_path / "series").mkdir()
    _raises(tmp_path / "series", "no DICOM image files", read=read_volume)


def test_folder_of_non_dicom_files(tmp_path):
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "readme.txt").write_text("hello")
    _raises(tmp_path / "series", "no DICOM image files", read=read_volume)


def test_folder_with_two_series(phantom_dicom_dir, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(phantom_dicom_dir / "CT" / "01", folder)
    shutil.copy(next((phantom_dicom_dir / "MRI" / "01").iterdir()), folder / "mr.dcm")
    _raises(folder, "2 DICOM series", read=read_volume)


def test_png_is_not_a_volume(tmp_path):
    _raises(_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8)), "not a volume", read=read_volume)


def test_single_dicom_file_is_not_a_volume():
    path = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    _raises(path, "series folder", read=read_volume)


def test_sixteen_bit_png_is_read_not_refused(tmp_path):
    img = read_image(_png(tmp_path / "deep.png", np.full((8, 8), 40000, np.uint16)))
    assert img.bit_depth == 16 and float(img.pixels.max()) == 40000.0


def test_text_file_with_dcm_extension(tmp_path):
    (tmp_path / "scan.dcm").write_text("patient notes, not a DICOM file\n" * 20)
    _raises(tmp_path / "scan.dcm", "not a DICOM file")
