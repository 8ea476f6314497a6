"""Preprocessing: windowing, MRI normalisation, CLAHE, letterbox and its exact inverse, pairs."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pydicom.data
import pytest
from dicom_check import enhanced_image

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.image import MedicalImage
from medfuse.runtime.io import read_image
from medfuse.runtime.preprocess import (
    CT_WINDOW_PRESETS,
    Letterbox,
    PreprocessConfig,
    apply_clahe,
    letterbox,
    normalize_mri,
    prepare_pair,
    to_uint8_image,
    window_ct,
    window_preset,
)

CFG = PreprocessConfig(input_size=64)


def _img(pixels, name="x.png", **kw) -> MedicalImage:
    kw.setdefault("bit_depth", 8)
    return MedicalImage(pixels=np.asarray(pixels, np.float32), path=name, format="png", **kw)


def test_window_ct_maps_the_window_to_unit_range():
    hu = np.array([-1000, -160, 40, 240, 2000], np.float32)
    assert window_ct(hu, 40, 400).tolist() == pytest.approx([0, 0, 0.5, 1, 1])


def test_presets_are_named_and_unknown_names_list_them():
    assert window_preset("default") == (40.0, 400.0) and "bone" in CT_WINDOW_PRESETS
    with pytest.raises(MedfuseError, match="brain"):
        window_preset("lung-ish")


def test_normalize_mri_clips_outliers():
    x = np.concatenate([np.linspace(0, 100, 999), [1e6]]).astype(np.float32)
    out = normalize_mri(x, 0.5, 99.5)
    assert out.min() == 0 and out.max() == 1 and out[500] == pytest.approx(0.5, abs=0.02)
    assert not normalize_mri(np.full((4, 4), 7.0)).any()  # flat image: nothing to stretch


def test_clahe_raises_local_contrast_and_stays_in_range():
    x = np.tile(np.linspace(0.4, 0.6, 64, dtype=np.float32), (64, 1))
    out = apply_clahe(x, 2.0, 8)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1 and np.ptp(out) > np.ptp(x)


@pytest.mark.parametrize("shape", [(37, 91), (91, 37), (63, 63), (200, 51), (64, 64)])
def test_letterbox_restore_is_the_inverse(shape):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    smooth = np.sin(yy / shape[0] * 3) * 0.25 + np.cos(xx / shape[1] * 2) * 0.25 + 0.5
    boxed, geometry = letterbox(smooth, 64, "linear")
    assert boxed.shape == (64, 64) and max(geometry.inner_height, geometry.inner_width) == 64
    # aspect kept, padding even (within a pixel), zero outside the image
    scale = 64 / max(shape)
    assert abs(geometry.inner_height - shape[0] * scale) <= 0.5 and abs(geometry.inner_width - shape[1] * scale) <= 0.5
    assert abs(2 * geometry.top + geometry.inner_height - 64) <= 1 and abs(2 * geometry.left + geometry.inner_width - 64) <= 1
    restored = geometry.restore(boxed)
    assert restored.shape == shape and np.abs(restored - smooth).max() < 0.06
    constant, g = letterbox(np.full((*shape, 3), 0.7, np.float32), 64)
    assert np.allclose(g.restore(constant), 0.7)  # no padding leaks back in


def test_letterbox_at_model_size_is_the_identity():
    x = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    boxed, geometry = letterbox(x, 64)
    assert np.array_equal(boxed, x) and np.array_equal(geometry.restore(boxed), x)
    assert geometry == Letterbox.fit(64, 64, 64)


def test_ct_with_hu_is_windowed_to_three_channels():
    ct = read_image(pydicom.data.get_testdata_file("CT_small.dcm"))
    mri = _img(np.random.default_rng(0).random((128, 128)) * 500, "m.png")
    pair = prepare_pair(ct, mri, CFG)
    assert pair.ct.shape == (3, 64, 64) and pair.mri.shape == (1, 64, 64)
    assert pair.ct.dtype == np.float32 and np.array_equal(pair.ct[0], pair.ct[2])
    direct = cv2.resize(window_ct(ct.pixels, 40, 400), (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(pair.ct[0] - direct).max() < 1e-5


def test_eight_bit_ct_is_taken_as_windowed():
    ct = _img(np.full((64, 64), 255.0), "ct.png")
    pair = prepare_pair(ct, _img(np.eye(64) * 100, "m.png"), CFG)
    assert np.allclose(pair.ct, 1.0)


def test_sixteen_bit_ct_is_stretched_min_to_max():
    pixels = np.zeros((64, 64), np.float32)
    pixels[:, 32:] = 3000  # a 12-bit range stored in 16 bits must not come out nearly black
    pair = prepare_pair(_img(pixels, "ct16.png", bit_depth=16), _img(pixels, "m.png"), CFG)
    assert pair.ct.min() == 0 and pair.ct.max() == pytest.approx(1.0)


def test_rgb_ct_becomes_gray():
    rgb = np.zeros((64, 64, 3), np.float32)
    rgb[..., :] = [255, 255, 255]
    pair = prepare_pair(_img(rgb, "ct.png"), _img(np.eye(64), "m.png"), CFG)
    assert np.allclose(pair.ct, 1.0, atol=1e-3)


def test_rgb_mri_gray_in_colour_is_accepted_and_true_colour_refused():
    gray = np.random.default_rng(1).random((64, 64)).astype(np.float32) * 255
    as_rgb = _img(np.repeat(gray[..., None], 3, axis=-1), "mri_rgb.png")
    ct = _img(gray, "ct.png")
    assert np.allclose(prepare_pair(ct, as_rgb, CFG).mri, prepare_pair(ct, _img(gray, "m.png"), CFG).mri)
    colour = as_rgb.pixels.copy()
    colour[..., 0] = 255 - colour[..., 0]
    with pytest.raises(MedfuseError, match="colour") as info:
        prepare_pair(ct, _img(colour, "pet_as_mri.png"), CFG)
    assert "pet_as_mri.png" in str(info.value)


def test_mismatched_sizes_name_both_files_and_shapes():
    with pytest.raises(MedfuseError) as info:
        prepare_pair(_img(np.zeros((64, 64)), "a/ct.png"), _img(np.zeros((64, 48)), "b/mri.png"), CFG)
    text = str(info.value)
    assert "a/ct.png" in text and "b/mri.png" in text and "64x64" in text and "64x48" in text


def test_mismatched_spacing_is_refused():
    ct = _img(np.zeros((64, 64)), "ct.dcm", spacing=(0.5, 0.5))
    with pytest.raises(MedfuseError, match="spacing"):
        prepare_pair(ct, dataclasses.replace(ct, path="mri.dcm", spacing=(1.0, 1.0)), CFG)


def test_volume_must_be_sliced_first():
    volume = dataclasses.replace(_img(np.zeros((3, 64, 64)), "v.nii"), is_volume=True)
    with pytest.raises(MedfuseError, match="slice by slice"):
        prepare_pair(volume, volume, CFG)


def test_to_uint8_image_maps_back_to_the_original_size():
    ct = _img(np.full((50, 30), 128.0), "ct.png")
    pair = prepare_pair(ct, _img(np.eye(50, 30), "m.png"), CFG)
    out = to_uint8_image(pair.ct, pair.geometry)
    assert out.dtype == np.uint8 and out.shape == (50, 30, 3) and np.all(out == 128)


def test_clahe_option_changes_the_input():
    rng = np.random.default_rng(2)
    ct, mri = _img(rng.random((64, 64)) * 60 + 100, "c.png"), _img(rng.random((64, 64)), "m.png")
    plain = prepare_pair(ct, mri, CFG)
    enhanced = prepare_pair(ct, mri, dataclasses.replace(CFG, clahe=True))
    assert enhanced.ct.std() > plain.ct.std()


def test_config_json_round_trip():
    cfg = PreprocessConfig(input_size=128, ct_window_center=75, ct_window_width=215, clahe=True, interpolation="cubic")
    assert PreprocessConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        PreprocessConfig.from_dict({**cfg.to_dict(), "gamma": 2})


def test_phantom_dicom_pair_prepares(phantom_dicom_dir):
    ct = read_image(phantom_dicom_dir / "CT" / "01", slice_index=1)
    mri = read_image(phantom_dicom_dir / "MRI" / "01", slice_index=1)
    pair = prepare_pair(ct, mri, CFG)
    assert ct.is_hu and pair.ct.max() == pytest.approx(1.0) and pair.mri.max() == pytest.approx(1.0)


def test_enhanced_pairs_are_checked_by_each_frame_position(tmp_path):
    """Enhanced CT and MR keep orientation and position per frame in functional groups, not at the
    top level: the pair check reads them there, so two different frames are refused."""
    frame_of_reference = pydicom.uid.generate_uid()
    ct = enhanced_image(tmp_path / "ct.dcm", frame_of_reference=frame_of_reference)
    mri = enhanced_image(tmp_path / "mri.dcm", modality="MR", frame_of_reference=frame_of_reference)
    prepare_pair(read_image(ct, slice_index=1), read_image(mri, slice_index=1), CFG)
    with pytest.raises(MedfuseError, match=r"different slices \(10.0 and 12.5 mm"):
        prepare_pair(read_image(ct, slice_index=0), read_image(mri, slice_index=1), CFG)
    axial = enhanced_image(tmp_path / "axial.dcm", modality="MR", frame_of_reference=frame_of_reference,
                           orientation=(1, 0, 0, 0, 1, 0))
    with pytest.raises(MedfuseError, match="differ in DICOM ImageOrientationPatient"):
        prepare_pair(read_image(ct, slice_index=1), read_image(axial, slice_index=1), CFG)


def test_one_frame_enhanced_files_and_frames_without_a_position(tmp_path):
    """A one-frame enhanced file is still placed by its functional groups; a frame without its own
    position is not compared at all (a vendor's top-level position belongs to the first frame)."""
    frame_of_reference = pydicom.uid.generate_uid()
    ct = enhanced_image(tmp_path / "ct.dcm", positions=(10.0,), frame_of_reference=frame_of_reference)
    far = enhanced_image(tmp_path / "far.dcm", modality="MR", positions=(60.0,), frame_of_reference=frame_of_reference)
    with pytest.raises(MedfuseError, match="different slices"):
        prepare_pair(read_image(ct), read_image(far), CFG)
    mri = enhanced_image(tmp_path / "mri.dcm", modality="MR", positions=(10.0, 30.0), frame_of_reference=frame_of_reference)
    ds = pydicom.dcmread(mri)
    ds.ImagePositionPatient = [0, 10.0, 0]  # the first frame's
    del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    ds.save_as(mri)
    elsewhere = enhanced_image(tmp_path / "ct30.dcm", positions=(30.0,), frame_of_reference=frame_of_reference)
    prepare_pair(read_image(elsewhere), read_image(mri, slice_index=1), CFG)  # unknown position: not judged


def test_a_slice_elsewhere_is_refused_even_when_the_mri_has_no_orientation(phantom_dicom_dir, tmp_path):
    """Some exports drop ImageOrientationPatient; the MRI's position is still compared along the CT's normal."""
    ct = read_image(phantom_dicom_dir / "CT" / "01" / "01002.dcm")
    mri = pydicom.dcmread(phantom_dicom_dir / "MRI" / "01" / "01003.dcm")
    del mri.ImageOrientationPatient
    mri.save_as(tmp_path / "mri.dcm")
    with pytest.raises(MedfuseError, match="different slices"):
        prepare_pair(ct, read_image(tmp_path / "mri.dcm"), CFG)


@pytest.mark.shared_data
def test_harvard_pairs_preprocess(shared_data):
    ct_dir = shared_data / "harvard-ct-mri" / "train" / "CT"
    for ct_path in sorted(ct_dir.glob("*.png"))[:3]:
        pair = prepare_pair(read_image(ct_path), read_image(ct_dir.parent / "MRI" / ct_path.name), PreprocessConfig())
        assert pair.ct.shape == (3, 256, 256) and pair.mri.shape == (1, 256, 256)
        assert 0 <= pair.ct.min() and pair.ct.max() <= 1 and pair.mri.max() == pytest.approx(1.0)


def test_gray_mri_saved_as_rgb_jpeg_is_accepted(tmp_path):
    yy, xx = np.mgrid[:64, :64]
    gray = ((np.sin(xx / 5) + np.cos(yy / 7)) * 60 + 128).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "mri.jpg"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70])
    mri = read_image(tmp_path / "mri.jpg")
    assert mri.is_rgb  # JPEG keeps three (slightly unequal) channels
    pair = prepare_pair(_img(gray, "ct.png"), mri, CFG)
    assert pair.mri.shape == (1, 64, 64) and pair.mri.max() == pytest.approx(1.0)


@pytest.mark.parametrize("interpolation", ["nearest", "linear", "area"])
def test_letterbox_round_trip_does_not_shift_the_image(interpolation):
    """cv2.INTER_NEAREST is not centred on pixel centres: 'nearest' moved a ramp by about 1 px."""
    from medfuse.runtime.letterbox import letterbox

    ramp = np.tile(np.arange(300, dtype=np.float32), (300, 1))  # value = column index
    square, geometry = letterbox(ramp, 256, interpolation)
    back = geometry.restore(square)
    assert abs(float(np.mean(back[:, 5:-5] - ramp[:, 5:-5]))) < 0.05
