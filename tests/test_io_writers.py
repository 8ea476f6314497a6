"""Writers: PNG, NIfTI with the source affine, DICOM Secondary Capture that dciodvfy accepts."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pydicom.data
import pytest
from dicom_check import dciodvfy_errors, enhanced_image
from medfuse.runtime.dicom_frames import frame_positions
from medfuse.runtime.errors import MedfuseError

from medfuse.runtime.io import (
    SeriesLabel,
    read_image,
    read_volume,
    write_dicom_secondary_capture,
    write_dicom_series,
    write_nifti,
    write_png,
)

NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"
RNG = np.random.default_rng(0)


def test_png_roundtrip_gray_float_and_rgb_uint8(tmp_path):
    gray = np.linspace(0, 1, 12 * 9, dtype=np.float32).reshape(12, 9)
    assert np.array_equal(read_image(write_png(tmp_path / "g.png", gray)).pixels, np.round(gray * 255))
    rgb = RNG.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    back = read_image(write_png(tmp_path / "sub" / "c.png", rgb))
    assert back.is_rgb and np.array_equal(back.pixels, rgb)


def test_png_rejects_a_volume(tmp_path):
    with pytest.raises(ValueError, match="gray"):
        write_png(tmp_path / "v.png", np.zeros((2, 4, 4, 3), np.uint8))
    assert not any(tmp_path.iterdir())


def test_nifti_volume_keeps_the_source_affine(tmp_path):
    source = read_volume(NIBABEL_DATA / "anatomical.nii")
    fused = RNG.integers(0, 256, (*source.pixels.shape, 3), dtype=np.uint8)
    out = write_nifti(tmp_path / "fused.nii.gz", fused, source)
    loaded = nibabel.load(out)
    assert np.allclose(loaded.affine, source.affine) and loaded.shape == nibabel.load(NIBABEL_DATA / "anatomical.nii").shape
    back = read_volume(out)
    assert back.pixels.shape == fused.shape and np.array_equal(back.pixels, fused)


def test_nifti_slice_lands_at_its_own_voxel_index(tmp_path):
    source = read_image(NIBABEL_DATA / "anatomical.nii", slice_index=7)
    out = write_nifti(tmp_path / "slice.nii", source.pixels, source)
    loaded = nibabel.load(out)
    assert loaded.shape[2] == 1 and np.allclose(loaded.affine[:3, 3], (source.affine @ [0, 0, 7, 1])[:3])


def test_nifti_from_dicom_series_has_its_plane(phantom_dicom_dir, tmp_path):
    source = read_volume(phantom_dicom_dir / "CT" / "01")
    out = write_nifti(tmp_path / "ct.nii.gz", source.pixels, source)
    zooms = nibabel.load(out).header.get_zooms()
    assert zooms == pytest.approx((0.9, 0.9, 5.0)) and read_volume(out).is_hu


def _ct_small():
    return read_image(pydicom.data.get_testdata_file("CT_small.dcm"))


def test_secondary_capture_passes_dciodvfy_and_carries_the_ct_study(tmp_path):
    ct, mr = _ct_small(), read_image(pydicom.data.get_testdata_file("MR_small.dcm"))
    rgb = RNG.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    path = write_dicom_secondary_capture(tmp_path / "fused.dcm", rgb, ct, extra_sources=[mr])
    assert dciodvfy_errors(path) == []
    ds, src = pydicom.dcmread(path), ct.datasets[0]
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.PhotometricInterpretation == "RGB"
    assert ds.PatientID == src.PatientID and ds.PatientName == src.PatientName
    assert ds.StudyInstanceUID == src.StudyInstanceUID and list(ds.PixelSpacing) == list(src.PixelSpacing)
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID != src.SOPInstanceUID
    refs = [item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence]
    assert refs == [src.SOPInstanceUID, mr.datasets[0].SOPInstanceUID]
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert np.array_equal(read_image(path).pixels, rgb)


def test_secondary_capture_without_reference_passes_dciodvfy(tmp_path):
    path = write_dicom_secondary_capture(tmp_path / "plain.dcm", np.zeros((16, 24, 3), np.uint8), None)
    assert dciodvfy_errors(path) == []


def test_secondary_capture_series_passes_dciodvfy(phantom_dicom_dir, tmp_path):
    source = read_volume(phantom_dicom_dir / "CT" / "01")
    fused = RNG.integers(0, 256, (source.depth, 64, 64, 3), dtype=np.uint8)
    folder = write_dicom_series(tmp_path / "fused", fused, source)
    files = sorted(folder.iterdir())
    assert len(files) == source.depth and dciodvfy_errors(files[0]) == []
    headers = [pydicom.dcmread(f) for f in files]
    assert len({ds.SeriesInstanceUID for ds in headers}) == 1
    assert [ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in headers] == [
        ds.SOPInstanceUID for ds in source.datasets
    ]
    assert np.array_equal(read_volume(folder).pixels, fused)
    # orientation letters for viewers that ignore the plane geometry (the SC IOD's own way)
    cosines = [float(v) for v in source.datasets[0].ImageOrientationPatient]
    assert cosines == [1, 0, 0, 0, 1, 0] and all(list(ds.PatientOrientation) == ["L", "P"] for ds in headers)


def test_fused_series_carries_the_ct_plane_geometry(phantom_dicom_dir, tmp_path):
    """Without FrameOfReferenceUID and ImagePositionPatient a viewer can neither sort the fused
    series by position nor link its scrolling to the CT's: each slice takes its CT slice's."""
    source = read_volume(phantom_dicom_dir / "CT" / "01")
    folder = write_dicom_series(tmp_path / "fused", np.zeros((source.depth, 64, 64, 3), np.uint8), source)
    headers = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    for ds, src in zip(headers, source.datasets, strict=True):
        assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert list(ds.ImagePositionPatient) == list(src.ImagePositionPatient)
        assert list(ds.ImageOrientationPatient) == list(src.ImageOrientationPatient)
        assert ds.SliceThickness == src.SliceThickness and list(ds.PixelSpacing) == list(src.PixelSpacing)
    assert len({tuple(ds.ImagePositionPatient) for ds in headers}) == source.depth
    assert dciodvfy_errors(sorted(folder.iterdir())[1]) == []  # Standard Extended SC: warnings, no error
    # read back, the series is in the CT's slice order by position
    assert [pydicom.dcmread(f).InstanceNumber for f in sorted(folder.iterdir())] == [1, 2, 3]


def test_fused_slices_of_an_enhanced_ct_take_each_frame_position(tmp_path):
    source = read_volume(enhanced_image(tmp_path / "enhanced.dcm"))
    folder = write_dicom_series(tmp_path / "fused", np.zeros((2, 8, 8, 3), np.uint8), source)
    headers = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    assert [list(map(float, ds.ImagePositionPatient)) for ds in headers] == [[0, 10, 0], [0, 12.5, 0]]
    for ds in headers:
        assert list(map(float, ds.ImageOrientationPatient)) == [1, 0, 0, 0, 0, -1]
        assert list(map(float, ds.PixelSpacing)) == [0.5, 0.5] and float(ds.SliceThickness) == 2.5
        assert ds.FrameOfReferenceUID == source.datasets[0].FrameOfReferenceUID
        assert list(ds.PatientOrientation) == ["L", "F"]  # derived from the functional group's cosines
    assert dciodvfy_errors(sorted(folder.iterdir())[0]) == []


def test_frame_positions_win_over_a_top_level_position(tmp_path):
    """Some vendors add a top-level ImagePositionPatient to enhanced files; it holds for one frame at most."""
    path = enhanced_image(tmp_path / "enhanced.dcm")
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 10, 0], [1, 0, 0, 0, 0, -1]
    ds.save_as(path)
    folder = write_dicom_series(tmp_path / "fused", np.zeros((2, 8, 8, 3), np.uint8), read_volume(path))
    positions = [list(map(float, pydicom.dcmread(f).ImagePositionPatient)) for f in sorted(folder.iterdir())]
    assert positions == [[0, 10, 0], [0, 12.5, 0]]


@pytest.mark.parametrize("positions", [(10.0, 13.0, 16.0), (16.0, 13.0, 10.0)], ids=["ascending", "descending"])
def test_nifti_from_an_enhanced_ct_is_placed_by_its_frames(tmp_path, positions):
    """An enhanced CT keeps its plane in functional groups, and may store its frames either way
    along the normal: each NIfTI slice must land on its own frame's position."""
    source = read_volume(enhanced_image(tmp_path / "enhanced.dcm", positions=positions, thickness=2.5))
    assert source.spacing == pytest.approx((3.0, 0.5, 0.5))  # between the frames, not SliceThickness
    affine = nibabel.load(write_nifti(tmp_path / "ct.nii.gz", source.pixels, source)).affine
    for k, y in enumerate(positions):
        assert affine @ [0, 0, k, 1] == pytest.approx([0, -y, 0, 1])  # LPS (0, y, 0) in RAS
    # coronal: a column step goes along the patient's left (RAS -x), a row step to the feet (-z)
    assert affine @ [1, 2, 0, 0] == pytest.approx([-1.0, 0, -0.5, 0])


def test_nifti_of_one_enhanced_frame_lies_at_that_frame(tmp_path):
    source = read_image(enhanced_image(tmp_path / "enhanced.dcm"), slice_index=1)
    affine = nibabel.load(write_nifti(tmp_path / "frame.nii", source.pixels, source)).affine
    assert affine[:3, 3] == pytest.approx([0, -12.5, 0])


def test_nifti_of_a_one_frame_enhanced_ct_and_of_frames_missing_a_position(tmp_path):
    one = read_image(enhanced_image(tmp_path / "one.dcm", positions=(10.0,)))
    assert nibabel.load(write_nifti(tmp_path / "one.nii", one.pixels, one)).affine[:3, 3] == pytest.approx([0, -10, 0])
    path = enhanced_image(tmp_path / "gap.dcm", positions=(16.0, 13.0, 10.0, 7.0))
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = [0, 16.0, 0]  # a vendor's top-level copy of the first frame's
    del ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence  # the last frame has none
    ds.save_as(path)
    assert frame_positions(pydicom.dcmread(path)) == [16.0, 13.0, 10.0, None]  # not the top-level copy
    volume = read_volume(path)
    affine = nibabel.load(write_nifti(tmp_path / "gap.nii", volume.pixels, volume)).affine
    assert [affine @ [0, 0, k, 1] for k in range(3)] == [pytest.approx([0, -y, 0, 1]) for y in (16.0, 13.0, 10.0)]


def test_a_series_of_one_frame_enhanced_files_is_placed_file_by_file(tmp_path):
    """Some scanners write an enhanced series as one single-frame file per slice."""
    series, folder = pydicom.uid.generate_uid(), tmp_path / "series"
    folder.mkdir()
    for name, y in (("a.dcm", 16.0), ("b.dcm", 10.0), ("c.dcm", 13.0)):
        enhanced_image(folder / name, positions=(y,), series_uid=series)
    volume = read_volume(folder)
    assert volume.spacing == pytest.approx((3.0, 0.5, 0.5))  # ordered by position, spaced by it
    affine = nibabel.load(write_nifti(tmp_path / "v.nii", volume.pixels, volume)).affine
    assert [affine @ [0, 0, k, 1] for k in range(3)] == [pytest.approx([0, -y, 0, 1]) for y in (10.0, 13.0, 16.0)]
    fused = write_dicom_series(tmp_path / "fused", np.zeros((3, 8, 8, 3), np.uint8), volume)
    positions = [float(pydicom.dcmread(f).ImagePositionPatient[1]) for f in sorted(fused.iterdir())]
    assert positions == [10.0, 13.0, 16.0]


def test_nifti_refuses_frames_no_affine_can_place(tmp_path):
    """Frames stored out of position order (or with a gap) would land in the wrong place under one
    affine; the DICOM series, which keeps each frame's own position, is still written."""
    volume = read_volume(enhanced_image(tmp_path / "mixed.dcm", positions=(10.0, 16.0, 13.0)))
    with pytest.raises(MedfuseError, match="not evenly spaced along one direction"):
        write_nifti(tmp_path / "v.nii", volume.pixels, volume)
    assert not (tmp_path / "v.nii").exists()
    fused = write_dicom_series(tmp_path / "fused", np.zeros((3, 8, 8, 3), np.uint8), volume)
    assert [float(pydicom.dcmread(f).ImagePositionPatient[1]) for f in sorted(fused.iterdir())] == [10.0, 16.0, 13.0]


def test_series_number_and_description_label_every_file_of_a_series(phantom_dicom_dir, tmp_path):
    source = read_volume(phantom_dicom_dir / "CT" / "01")
    label = SeriesLabel(42, "Fusion CT+MR T1")
    folder = write_dicom_series(tmp_path / "fused", np.zeros((source.depth, 64, 64, 3), np.uint8), source,
                                series_label=label)
    headers = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    assert {(ds.SeriesNumber, ds.SeriesDescription) for ds in headers} == {(42, "Fusion CT+MR T1")}
    assert dciodvfy_errors(sorted(folder.iterdir())[0]) == []
    default = pydicom.dcmread(write_dicom_secondary_capture(tmp_path / "d.dcm", np.zeros((128, 128, 3), np.uint8),
                                                            _ct_small(), modality_pair="pet-mri"))
    assert (default.SeriesNumber, default.SeriesDescription) == (1000, "medfuse PET-MRI fusion")


@pytest.mark.parametrize("number, description, needle", [
    (2**31, None, "32-bit SeriesNumber"), (1, "x" * 65, "at most 64 characters"), (1, "a\\b", "backslash"),
    (1, "line\nbreak", "control characters")])
def test_series_labels_dicom_cannot_hold_are_refused(number, description, needle):
    with pytest.raises(MedfuseError, match=needle):
        SeriesLabel(number, description)


def test_fused_pixels_off_the_reference_grid_are_refused(phantom_dicom_dir, tmp_path):
    """Its plane geometry and references are the reference's: on another grid they would lie."""
    with pytest.raises(MedfuseError, match="the fused image is 100x60 but its reference is 128x128"):
        write_dicom_secondary_capture(tmp_path / "f.dcm", np.zeros((100, 60, 3), np.uint8), _ct_small())
    source = read_volume(phantom_dicom_dir / "CT" / "01")
    with pytest.raises(MedfuseError, match="the fused volume has 5 slices but its reference has 3"):
        write_dicom_series(tmp_path / "s", np.zeros((5, 64, 64, 3), np.uint8), source)
    assert not (tmp_path / "f.dcm").exists() and not (tmp_path / "s").exists()


def test_no_partial_plane_geometry_without_a_frame_of_reference(tmp_path):
    """A position without its frame of reference means nothing to a viewer: all or none."""
    ct = _ct_small()
    del ct.datasets[0].FrameOfReferenceUID
    ds = pydicom.dcmread(write_dicom_secondary_capture(tmp_path / "f.dcm", np.zeros((128, 128, 3), np.uint8), ct))
    assert not any(k in ds for k in ("FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient"))
    assert list(ds.PixelSpacing) == list(ct.datasets[0].PixelSpacing)  # the grid is still the CT's


def test_functional_pairs_are_described_as_such(tmp_path):
    ds = pydicom.dcmread(write_dicom_secondary_capture(tmp_path / "pet.dcm", np.zeros((16, 16, 3), np.uint8), None,
                                                       modality_pair="pet-mri"))
    assert ds.SeriesDescription == "medfuse PET-MRI fusion"
    assert ds.DerivationDescription == "PET-MRI image fusion by medfuse"


def test_orientation_letters_put_the_dominant_axis_first():
    from medfuse.runtime.dicom_write import _axis_letters

    assert _axis_letters([1, 0, 0]) == "L" and _axis_letters([-1, 0, 0]) == "R"
    assert _axis_letters([0, -0.8, 0.6]) == "AH" and _axis_letters([0, 0.1, -0.99]) == "F"


@pytest.mark.parametrize("modality", ["CT", "MRI"])
def test_phantom_series_pass_dciodvfy(phantom_dicom_dir, modality):
    assert dciodvfy_errors(next((phantom_dicom_dir / modality / "01").iterdir())) == []


def test_references_to_one_frame_of_a_multiframe_source_name_the_frame(tmp_path):
    """ReferencedFrameNumber is Type 1C when one frame of a multi-frame image is meant (PS3.3 Table 10-3)."""
    source = pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm")  # ships with pydicom
    frame = read_image(source, slice_index=1)
    ds = pydicom.dcmread(write_dicom_secondary_capture(tmp_path / "one.dcm", RNG.integers(
        0, 256, (100, 100, 3), dtype=np.uint8), frame))
    assert ds.SourceImageSequence[0].ReferencedFrameNumber == 2
    volume = read_volume(source)
    folder = write_dicom_series(tmp_path / "series", RNG.integers(0, 256, (2, 100, 100, 3), dtype=np.uint8), volume)
    frames = [pydicom.dcmread(f).SourceImageSequence[0].ReferencedFrameNumber for f in sorted(folder.iterdir())]
    assert frames == [1, 2]
    single = pydicom.dcmread(write_dicom_secondary_capture(tmp_path / "plain.dcm", np.zeros((128, 128, 3), np.uint8),
                                                           read_image(pydicom.data.get_testdata_file("CT_small.dcm"))))
    assert "ReferencedFrameNumber" not in single.SourceImageSequence[0]  # a single-frame image: no frame
