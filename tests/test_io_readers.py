"""Readers: every format arrives as float32 pixels plus the metadata preprocessing needs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import nibabel
import numpy as np
import pydicom
import pydicom.data
import pytest

from dicom_check import dataset, enhanced_image
from medfuse.runtime.io import read_image, read_volume

NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"


def test_ct_small_dicom_reads_in_hounsfield_units():
    ct = read_image(pydicom.data.get_testdata_file("CT_small.dcm"))
    assert ct.format == "dicom" and ct.modality == "CT" and ct.is_hu
    assert ct.pixels.dtype == np.float32 and ct.pixels.shape == (128, 128)
    assert ct.pixels.min() < -800  # air
    soft = (ct.pixels > -100) & (ct.pixels < 150)
    assert 0 <= np.median(ct.pixels[soft]) <= 100  # soft tissue
    assert ct.spacing == pytest.approx((0.661468, 0.661468))
    assert ct.datasets and ct.datasets[0].SOPInstanceUID


def test_mr_dicom_is_not_hu():
    mr = read_image(pydicom.data.get_testdata_file("MR_small.dcm"))
    assert mr.modality == "MR" and not mr.is_hu and mr.pixels.shape == (64, 64)


def test_nibabel_anatomical_reads_as_3d_volume_and_slices():
    path = NIBABEL_DATA / "anatomical.nii"
    volume = read_volume(path)
    raw = np.asanyarray(nibabel.load(path).dataobj).astype(np.float32)
    assert volume.is_volume and volume.pixels.shape == (raw.shape[2], raw.shape[0], raw.shape[1])
    assert not volume.is_hu  # an MRI with a few negative voxels is not mistaken for CT
    middle = read_image(path)
    assert middle.slice_index == raw.shape[2] // 2 and np.array_equal(middle.pixels, raw[:, :, raw.shape[2] // 2])
    sagittal = read_image(path, axis=0, slice_index=3)
    assert np.array_equal(sagittal.pixels, raw[3]) and sagittal.slice_axis == 0
    assert np.array_equal(volume.slice(5).pixels, read_image(path, slice_index=5).pixels)


@pytest.mark.parametrize("dtype,depth", [(np.uint8, 8), (np.uint16, 16)])
def test_png_gray_bit_depths(tmp_path, dtype, depth):
    pixels = (np.arange(40 * 30).reshape(40, 30) % np.iinfo(dtype).max).astype(dtype)
    cv2.imwrite(str(tmp_path / "g.png"), pixels)
    img = read_image(tmp_path / "g.png")
    assert img.bit_depth == depth and img.format == "png" and np.array_equal(img.pixels, pixels)


def test_rgb_files_come_back_as_rgb_not_bgr(tmp_path):
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    img = read_image(tmp_path / "c.png")
    assert img.is_rgb and img.pixels[0, 0].tolist() == [200.0, 0.0, 0.0]


def test_tiff_16bit_and_jpeg(tmp_path):
    pixels = np.linspace(0, 60000, 24 * 16).reshape(24, 16).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.tif"), pixels)
    tif = read_image(tmp_path / "a.tif")
    assert tif.format == "tiff" and tif.bit_depth == 16 and np.array_equal(tif.pixels, pixels)
    cv2.imwrite(str(tmp_path / "b.jpg"), np.full((16, 16), 128, np.uint8))
    jpg = read_image(tmp_path / "b.jpg")
    assert jpg.format == "jpeg" and abs(float(jpg.pixels.mean()) - 128) < 2


def test_content_decides_over_a_missing_suffix(tmp_path):
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), tmp_path / "IM0001")
    assert read_image(tmp_path / "IM0001").is_hu


def test_dicom_series_ordered_by_position_not_instance_number(phantom_dicom_dir, tmp_path):
    folder = tmp_path / "series"
    shutil.copytree(phantom_dicom_dir / "CT" / "01", folder)
    files = sorted(folder.iterdir())
    for number, file in zip([3, 1, 2], files, strict=True):  # misleading instance numbers
        ds = pydicom.dcmread(file)
        ds.InstanceNumber = number
        ds.save_as(file)
    volume = read_volume(folder)
    z = [float(ds.ImagePositionPatient[2]) for ds in volume.datasets]
    assert z == sorted(z) and volume.pixels.shape == (3, 64, 64) and volume.is_hu
    assert volume.spacing == pytest.approx((5.0, 0.9, 0.9))


def test_dicom_series_falls_back_to_instance_number(phantom_dicom_dir, tmp_path):
    folder = tmp_path / "series"
    shutil.copytree(phantom_dicom_dir / "CT" / "01", folder)
    for number, file in zip([2, 3, 1], sorted(folder.iterdir()), strict=True):
        ds = pydicom.dcmread(file)
        del ds.ImagePositionPatient
        ds.InstanceNumber = number
        ds.save_as(file)
    volume = read_volume(folder)
    assert [int(ds.InstanceNumber) for ds in volume.datasets] == [1, 2, 3]
    middle = read_image(folder)
    assert middle.slice_index == 1 and int(middle.datasets[0].InstanceNumber) == 2


def test_phantom_nifti_ct_is_recognised_as_hu(phantom_nifti_dir):
    ct = read_image(phantom_nifti_dir / "CT" / "01.nii.gz", slice_index=1)
    mri = read_image(phantom_nifti_dir / "MRI" / "01.nii.gz", slice_index=1)
    assert ct.is_hu and not mri.is_hu and ct.pixels.min() == pytest.approx(-1000, abs=1)
    assert ct.spacing == pytest.approx((0.9, 0.9))


@pytest.mark.shared_data
def test_harvard_pair_reads(shared_data):
    ct_path = next(iter(sorted((shared_data / "harvard-ct-mri" / "train" / "CT").glob("*.png"))))
    ct, mri = read_image(ct_path), read_image(ct_path.parent.parent / "MRI" / ct_path.name)
    assert ct.pixels.shape == mri.pixels.shape == (256, 256) and ct.bit_depth == 8 and not ct.is_hu


def test_two_dimensional_nifti(tmp_path):
    pixels = np.arange(12 * 7, dtype=np.float32).reshape(12, 7)
    nibabel.save(nibabel.Nifti1Image(pixels, np.diag([0.5, 0.7, 1.0, 1.0])), tmp_path / "flat.nii.gz")
    img = read_image(tmp_path / "flat.nii.gz")
    assert np.array_equal(img.pixels, pixels) and img.spacing == pytest.approx((0.5, 0.7)) and not img.is_hu
    assert read_volume(tmp_path / "flat.nii.gz").pixels.shape == (1, 12, 7)


def test_multiframe_rgb_dicom_frames_and_volume():
    path = pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm")
    frame = read_image(path, slice_index=1)
    assert frame.is_rgb and frame.pixels.shape == (100, 100, 3) and frame.slice_index == 1
    volume = read_volume(path)
    assert volume.is_volume and volume.pixels.shape == (2, 100, 100, 3)
    assert np.array_equal(volume.slice(1).pixels, frame.pixels)


def _gray_dataset(**attrs):
    return dataset(**{"SamplesPerPixel": 1, "BitsAllocated": 8, "BitsStored": 8, "PixelRepresentation": 0, **attrs})


def test_monochrome1_is_inverted_against_the_bit_range_not_each_image():
    """Two slices of one MONOCHROME1 series: stored 0 must mean the same in both (it became 100 in
    one and 50 in the other), and 8-bit v must become 255 - v."""
    from medfuse.runtime.dicom_read import _to_values

    ds = _gray_dataset(Modality="MR", PhotometricInterpretation="MONOCHROME1")
    a, b = _to_values(np.array([[0, 100]], np.uint8), ds), _to_values(np.array([[0, 50]], np.uint8), ds)
    assert a[0, 0] == b[0, 0] == 255 and a[0, 1] == 155 and b[0, 1] == 205
    ct = _gray_dataset(Modality="CT", PhotometricInterpretation="MONOCHROME1", RescaleIntercept=-1024, RescaleSlope=1)
    assert _to_values(np.array([[1004]], np.uint16), ct)[0, 0] == -20  # Hounsfield units are not display values


def test_enhanced_ct_takes_hu_and_spacing_from_its_functional_groups():
    """Enhanced (multi-frame) CT keeps Rescale* and PixelSpacing in functional groups, not at the top
    level: it was read as raw stored values, min-max stretched instead of windowed."""
    from pydicom.dataset import Dataset

    from medfuse.runtime.dicom_read import _is_hu, _pixel_spacing, _to_values

    shared = Dataset()
    shared.PixelValueTransformationSequence = [dataset(RescaleIntercept=-1024, RescaleSlope=1, RescaleType="HU")]
    shared.PixelMeasuresSequence = [dataset(PixelSpacing=[0.5, 0.7])]
    second = Dataset()
    second.PixelValueTransformationSequence = [dataset(RescaleIntercept=-1000, RescaleSlope=2)]
    ds = _gray_dataset(Modality="CT", PhotometricInterpretation="MONOCHROME2", NumberOfFrames=2, BitsStored=16,
                       BitsAllocated=16, SharedFunctionalGroupsSequence=[shared],
                       PerFrameFunctionalGroupsSequence=[Dataset(), second])
    values = _to_values(np.full((2, 1, 1), 1004, np.uint16), ds)
    assert _is_hu(ds) and _pixel_spacing(ds) == (0.5, 0.7)
    assert values[0, 0, 0] == -20 and values[1, 0, 0] == 1008  # frame 2 has its own rescale


def test_enhanced_ct_with_rescale_only_per_frame_is_hu():
    from pydicom.dataset import Dataset

    from medfuse.runtime.dicom_read import _is_hu, _to_values

    frames = []
    for intercept in (-1024, -1000):
        group, item = Dataset(), Dataset()
        item.RescaleIntercept, item.RescaleSlope, item.RescaleType = intercept, 1, "HU"
        group.PixelValueTransformationSequence = [item]
        frames.append(group)
    ds = _gray_dataset(Modality="CT", NumberOfFrames=2, PerFrameFunctionalGroupsSequence=frames)
    assert _is_hu(ds)
    values = _to_values(np.full((2, 1, 1), 1000, np.uint16), ds)
    assert values[0, 0, 0] == -24 and values[1, 0, 0] == 0  # each frame through its own rescale


def test_enhanced_volume_slice_spacing_falls_back_to_its_functional_groups(tmp_path):
    """Frames at one position (a cine, a repeat) give no spacing; then the shared group's
    SliceThickness holds, not a default of 1 mm."""
    volume = read_volume(enhanced_image(tmp_path / "cine.dcm", positions=(10.0, 10.0), thickness=2.5))
    assert volume.spacing == pytest.approx((2.5, 0.5, 0.5))


def _require_gdcm() -> None:
    """GDCM comes with the dicom-codecs extra, which `make` installs: skip without it, except in CI."""
    try:
        import gdcm  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("python-gdcm is missing in CI; make installs medfuse[dicom-codecs]")
        pytest.skip("python-gdcm (pip install 'medfuse[dicom-codecs]') is not installed")


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_compressed_dicom_reads_as_its_uncompressed_original(name):
    """PACS exports are often compressed; lossless ones must give the stored values back exactly."""
    if "RLE" not in name:  # pydicom decodes RLE itself
        _require_gdcm()
    original = read_image(pydicom.data.get_testdata_file("MR_small.dcm"))
    compressed = read_image(pydicom.data.get_testdata_file(name))
    assert np.array_equal(compressed.pixels, original.pixels) and compressed.spacing == original.spacing


def test_jpeg2000_ct_arrives_in_hounsfield_units():
    _require_gdcm()
    ct = read_image(pydicom.data.get_testdata_file("693_J2KI.dcm"))
    assert ct.is_hu and ct.pixels.shape == (512, 512) and ct.pixels.min() < -1000 < 0 < ct.pixels.max()


def test_undecodable_compressed_dicom_is_one_sentence_naming_its_syntax_and_the_way_out(monkeypatch):
    from types import SimpleNamespace

    from medfuse.runtime import dicom_read

    ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    syntax = "its DICOM pixel data (JPEG-LS Lossless Image Compression) cannot be decoded: "

    def decoder(available, *missing):
        monkeypatch.setattr(dicom_read, "get_decoder", lambda uid: SimpleNamespace(
            is_available=available, missing_dependencies=list(missing)))

    decoder(False, "gdcm - requires gdcm>=3.0.10", "pylibjpeg - requires pylibjpeg>=2.0")
    assert dicom_read._decode_problem(ds, RuntimeError("x")) == (
        syntax + "no decoder is installed (pip install 'medfuse[dicom-codecs]' adds GDCM)")
    decoder(False, "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.4")  # e.g. HTJ2K: not GDCM's
    assert dicom_read._decode_problem(ds, RuntimeError("x")) == (
        syntax + "no installed decoder supports it; pydicom can use pylibjpeg - requires pylibjpeg>=2.0 and "
        "pylibjpeg-openjpeg>=2.4")
    decoder(True)  # a decoder is there and refused the data: its reasons, on one line
    plugins_failed = RuntimeError("Unable to decode as exceptions were raised by all available plugins:\n"
                                  "  gdcm: GDCM does not support 'JPEG Extended' for samples with 12-bit precision")
    assert dicom_read._decode_problem(ds, plugins_failed) == (
        syntax + "Unable to decode as exceptions were raised by all available plugins: gdcm: GDCM does not "
        "support 'JPEG Extended' for samples with 12-bit precision")
    private = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
    private.file_meta.TransferSyntaxUID = "1.2.3.4.5"  # a vendor's own: pydicom's is_compressed would raise
    assert dicom_read._decode_problem(private, ValueError("x")) == (
        "its DICOM pixel data cannot be decoded: 1.2.3.4.5 is not a transfer syntax pydicom knows")
    plain = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
    assert dicom_read._decode_problem(plain, ValueError("truncated")) == (
        "its DICOM pixel data (Explicit VR Little Endian) cannot be decoded: truncated")


def test_enhanced_geometry_kept_per_frame_or_in_a_one_frame_file(tmp_path):
    """Some vendors keep Pixel Measures in each frame's group, not the shared one; an enhanced file
    may hold a single frame. Both are read from the groups like any other enhanced file."""
    path = enhanced_image(tmp_path / "per_frame.dcm", modality="MR")
    ds = pydicom.dcmread(path)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.PixelMeasuresSequence = measures
    ds.save_as(path)
    assert read_image(path, slice_index=1).spacing == (0.5, 0.5)
    one = read_image(enhanced_image(tmp_path / "one.dcm", positions=(10.0,)))
    assert one.is_hu and one.pixels.min() == -1024 and one.spacing == (0.5, 0.5)
