"""Colour handling of functional (PET/SPECT) pairs: YCbCr round trip, colour preservation through
prepare_pair/to_uint8_image, the chroma error, and PET DICOM scaling (SUV)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from medfuse.runtime.color import (chroma_error, colorize, luma_of_channels, merge_luma_chroma, split_luma_chroma,
                                   uptake_mask)
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.functional import SUV_DISPLAY_MAX, activity_to_unit, functional_rgb, suv_factor
from medfuse.runtime.image import MedicalImage
from medfuse.runtime.metrics import to_gray255
from medfuse.runtime.phantom import make_phantom_pair
from medfuse.runtime.phantom_functional import make_functional_pair
from medfuse.runtime.preprocess import PreprocessConfig, prepare_pair, to_uint8_image

CFG = PreprocessConfig(input_size=64)


def _pet_pair(size: int = 48, colormap: str = "hot") -> tuple[MedicalImage, MedicalImage, np.ndarray]:
    """A non-square-friendly functional phantom pair as read from 8-bit PNGs, and the source RGB uint8."""
    rgb, mri = make_functional_pair(size=size, seed=3, colormap=colormap)
    rgb8 = np.round(rgb * 255).astype(np.uint8)
    pet = MedicalImage(rgb8.astype(np.float32), Path("pet.png"), "png", bit_depth=8)
    mr = MedicalImage(np.round(np.clip(mri, 0, 1) * 255).astype(np.float32), Path("mri.png"), "png", bit_depth=8)
    return pet, mr, rgb8


def test_ycrcb_round_trip_and_bt601_luma():
    rgb = np.random.default_rng(0).random((17, 23, 3), dtype=np.float32)
    luma, chroma = split_luma_chroma(rgb)
    assert luma.shape == (17, 23) and chroma.shape == (17, 23, 2)
    np.testing.assert_allclose(merge_luma_chroma(luma, chroma), rgb, atol=1e-3)
    rgb8 = np.round(rgb * 255).astype(np.uint8)
    np.testing.assert_allclose(np.round(split_luma_chroma(rgb8)[0] * 255), to_gray255(rgb8), atol=1)
    np.testing.assert_allclose(luma_of_channels(np.moveaxis(rgb, -1, 0)), luma, atol=1e-5)
    gray = np.full((4, 4, 3), 0.4, np.float32)  # gray has neutral chroma
    np.testing.assert_allclose(split_luma_chroma(gray)[1], 0.5, atol=1e-6)


def test_new_luma_keeps_chroma_where_in_gamut():
    # Muted colours (half saturation around mid-gray) stay inside the RGB cube after a small luma change.
    src = 0.25 + 0.5 * colorize(np.linspace(0.2, 0.8, 64, dtype=np.float32).reshape(8, 8), "jet")
    luma, chroma = split_luma_chroma(src)
    brighter = np.clip(luma + 0.05, 0, 1)
    merged = merge_luma_chroma(brighter, chroma)
    assert merged.min() > 0 and merged.max() < 1
    again_luma, again_chroma = split_luma_chroma(merged)
    np.testing.assert_allclose(again_luma, brighter, atol=1e-3)
    np.testing.assert_allclose(again_chroma, chroma, atol=1e-3)


def test_hot_colour_map_luma_rises_with_activity():
    luma = split_luma_chroma(colorize(np.linspace(0, 1, 256, dtype=np.float32)[None], "hot"))[0][0]
    assert np.all(np.diff(luma) >= -1e-3) and luma[0] < 0.01 and luma[-1] > 0.99
    with pytest.raises(ValueError, match="hot"):
        colorize(np.zeros((2, 2), np.float32), "nope")


@pytest.mark.parametrize("colormap,size", [("hot", 64), ("jet", 64), ("hot", 48)])
def test_functional_pair_feeds_luma_and_restores_the_source_colours(colormap, size):
    pet, mri, rgb8 = _pet_pair(size, colormap)
    prepared = prepare_pair(pet, mri, CFG, "pet-mri")
    assert prepared.ct.shape == (3, 64, 64) and prepared.chroma.shape == (size, size, 2)
    # The network input is exactly what the CT-MRI path makes of an RGB image it takes (pretraining's
    # visible image; a coloured CT is refused): its luma, 3 times.
    plain = prepare_pair(pet, mri, CFG, colour_first=True)
    assert plain.chroma is None
    np.testing.assert_allclose(prepared.ct, plain.ct, atol=1e-6)
    np.testing.assert_array_equal(prepared.ct[0], prepared.ct[2])
    # Fused = the functional input itself: the source comes back (to rounding; 48 px is resampled twice).
    back = np.abs(to_uint8_image(prepared.ct, prepared.geometry, prepared.chroma).astype(int) - rgb8)
    assert back.max() <= 1 if size == 64 else back.mean() < 4
    # Any fused luma: the output keeps the source chroma inside the uptake.
    fused = np.repeat(prepared.mri, 3, axis=0) * 0.5 + prepared.ct * 0.5
    out = to_uint8_image(fused, prepared.geometry, prepared.chroma)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    # Exactly (to 8-bit rounding) wherever the new luma and old chroma make a colour inside the RGB cube;
    # a saturated map (jet) under a much brighter luma is clipped there, which the chroma error measures.
    luma = prepared.geometry.restore(luma_of_channels(fused))
    raw = cv2.cvtColor(np.dstack([luma, prepared.chroma]).astype(np.float32), cv2.COLOR_YCrCb2RGB)
    in_gamut = uptake_mask(rgb8) & np.all((raw >= 0) & (raw <= 1), axis=-1)
    assert in_gamut.sum() > 100 and chroma_error(out, rgb8, in_gamut) < 1.0
    assert chroma_error(out, rgb8) < (3.0 if colormap == "hot" else 10.0)
    # ... while a gray output (what a CT-MRI model gives) loses it.
    gray = to_uint8_image(fused, prepared.geometry)
    assert chroma_error(gray, rgb8) > 10 * max(chroma_error(out, rgb8), 0.5)


def test_ct_mri_pairs_are_unchanged_and_unknown_pairs_refused():
    ct_hu, mri = make_phantom_pair(size=64, seed=1)
    ct = MedicalImage(ct_hu, Path("ct.dcm"), "dicom", modality="CT", is_hu=True)
    mr = MedicalImage(mri, Path("mr.dcm"), "dicom", modality="MR")
    prepared = prepare_pair(ct, mr, CFG, "ct-mri")
    assert prepared.chroma is None
    np.testing.assert_array_equal(prepared.ct, prepare_pair(ct, mr, CFG).ct)
    with pytest.raises(MedfuseError, match="unknown modality pair 'xray-mri'"):
        prepare_pair(ct, mr, CFG, "xray-mri")


def test_uptake_mask_and_chroma_error():
    _, _, rgb8 = _pet_pair()
    mask = uptake_mask(rgb8)
    assert 0.1 < mask.mean() < 0.9 and not mask[0, 0]  # the head, not the black background
    assert chroma_error(rgb8, rgb8) == 0.0
    assert np.isnan(chroma_error(rgb8, rgb8, np.zeros(mask.shape, bool)))


def _pt_dataset(**header):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Modality = "PT"
    for key, value in header.items():
        setattr(ds, key, value)
    return ds


def _suv_header(**override):
    from pydicom.dataset import Dataset

    info = Dataset()
    info.RadionuclideTotalDose, info.RadionuclideHalfLife, info.RadiopharmaceuticalStartTime = 370e6, 6586.2, "100000"
    header = {"Units": "BQML", "PatientWeight": 70, "DecayCorrection": "START", "SeriesTime": "110000",
              "RadiopharmaceuticalInformationSequence": [info]}
    return {**header, **override}


def test_suv_factor_from_the_pet_header():
    factor = suv_factor(_pt_dataset(**_suv_header()))
    decayed = 370e6 * 2 ** (-3600 / 6586.2)  # one hour after injection
    assert factor == pytest.approx(70_000 / decayed)
    assert suv_factor(_pt_dataset(**_suv_header(DecayCorrection="ADMIN"))) == pytest.approx(70_000 / 370e6)
    # Not decay corrected: the activity is that of acquisition time, so the dose decays to it too
    # (it was taken as undecayed: SUV 31 % low an hour after an F-18 injection).
    late = suv_factor(_pt_dataset(**_suv_header(DecayCorrection="NONE", AcquisitionTime="113000")))
    assert late == pytest.approx(70_000 / (370e6 * 2 ** (-5400 / 6586.2)))
    assert suv_factor(_pt_dataset(**_suv_header(DecayCorrection="SOMETHING"))) is None
    assert suv_factor(_pt_dataset(**_suv_header(Units="CNTS"))) is None
    assert suv_factor(_pt_dataset(**_suv_header(PatientWeight=None))) is None
    assert suv_factor(_pt_dataset(Units="GML")) == 1.0


def test_suv_elapsed_time_across_midnight_clock_skew_and_dates():
    """A scan 30 s before the recorded injection is two clocks disagreeing, not a scan a day
    later (the factor came out 6000 times too large and the PET saturated)."""
    one_hour = 70_000 / (370e6 * 2 ** (-3600 / 6586.2))
    assert suv_factor(_pt_dataset(**_suv_header(SeriesTime="095930"))) is None

    def after_midnight(**override):
        header = _suv_header(SeriesTime="003000", **override)
        header["RadiopharmaceuticalInformationSequence"][0].RadiopharmaceuticalStartTime = "233000"
        return header

    # an evening injection, a scan after midnight: times alone say so
    assert suv_factor(_pt_dataset(**after_midnight())) == pytest.approx(one_hour)
    # dates on both sides: exact, whatever the times alone would suggest
    dated = after_midnight(SeriesDate="20261205")
    dated["RadiopharmaceuticalInformationSequence"][0].RadiopharmaceuticalStartDateTime = "20261204233000"
    assert suv_factor(_pt_dataset(**dated)) == pytest.approx(one_hour)
    dated["SeriesDate"] = "20261204"  # the same times on one day: the scan before the injection
    assert suv_factor(_pt_dataset(**dated)) is None


def test_gray_pet_dicom_is_scaled_by_suv_else_by_percentile_and_drawn_in_hot():
    ds = _pt_dataset(**_suv_header())
    factor = suv_factor(ds)
    suv = np.linspace(0, 2 * SUV_DISPLAY_MAX, 400, dtype=np.float32).reshape(20, 20)
    img = MedicalImage(suv / factor, Path("pet.dcm"), "dicom", modality="PT", bit_depth=16, datasets=[ds])
    unit, how = activity_to_unit(img)
    assert how == "suv"
    np.testing.assert_allclose(unit, np.clip(suv / SUV_DISPLAY_MAX, 0, 1), atol=1e-4)
    counts = MedicalImage(suv * 1000, Path("pet.dcm"), "dicom", modality="PT", bit_depth=16,
                          datasets=[_pt_dataset(Units="CNTS")])
    unit, how = activity_to_unit(counts)
    assert how == "percentile" and unit.max() == 1.0 and unit.min() == 0.0
    rgb = functional_rgb(img)
    assert rgb.shape == (20, 20, 3) and rgb[0, 0].max() == 0.0 and rgb[-1, -1].min() == 1.0  # black .. white


def test_pet_dicom_file_is_read_through_the_modality_lut(tmp_path):
    from pydicom.uid import PositronEmissionTomographyImageStorage, generate_uid

    from medfuse.runtime.dicom_write import new_dataset, save
    from medfuse.runtime.io import read_image

    ds = new_dataset(PositronEmissionTomographyImageStorage, generate_uid())
    for key, value in _suv_header().items():
        setattr(ds, key, value)
    ds.Modality, ds.PatientName, ds.PatientID = "PT", "Test", "1"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2.5, 0
    stored = np.arange(256, dtype=np.uint16).reshape(16, 16) * 100
    ds.Rows, ds.Columns, ds.PixelData = 16, 16, stored.tobytes()
    save(ds, tmp_path / "pet.dcm")
    img = read_image(tmp_path / "pet.dcm")
    assert img.modality == "PT" and not img.is_hu
    np.testing.assert_allclose(img.pixels, stored * 2.5)  # Bq/ml
    unit, how = activity_to_unit(img)
    assert how == "suv"
    np.testing.assert_allclose(unit, np.clip(stored * 2.5 * suv_factor(ds) / SUV_DISPLAY_MAX, 0, 1), rtol=1e-5)


def test_float_rgb_tiff_keeps_its_colours():
    """Float samples are in [0, 1] already: dividing by 2**32 - 1 made the image black."""
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 0], rgb[..., 1] = 0.8, 0.3
    img = MedicalImage(rgb, Path("pet.tiff"), "tiff", bit_depth=32)
    np.testing.assert_allclose(functional_rgb(img), rgb)


def test_nearly_empty_functional_image_keeps_its_grey_levels():
    """Uptake in under 0.5 % of the pixels: both percentiles are 0; it was binarised to one level."""
    pixels = np.zeros((256, 256), np.float32)
    pixels.flat[:300] = np.arange(1, 301)
    unit, _ = activity_to_unit(MedicalImage(pixels, Path("pet.png"), "png", bit_depth=16))
    assert len(np.unique(unit[unit > 0])) == 300 and unit.max() == 1.0


def test_a_palette_colour_pet_dicom_keeps_its_palette(tmp_path):
    """A PET exported in its colour map as PALETTE COLOR: the indices were redrawn in `hot`."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medfuse.runtime.io import read_image

    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientID = "PT", "P1"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 4, 4, 1, "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ramp = np.arange(256, dtype=np.uint16)
    for colour, entries in (("Red", ramp[::-1]), ("Green", ramp // 2), ("Blue", ramp)):  # blue to red
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 8])
        setattr(ds, f"{colour}PaletteColorLookupTableData", entries.astype(np.uint8).tobytes())
    indices = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    ds.PixelData = indices.tobytes()
    path = tmp_path / "pet_palette.dcm"
    ds.save_as(path, enforce_file_format=True)
    img = read_image(path)
    assert img.is_rgb and img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels[..., 2], indices)  # the palette, not the indices as gray
    np.testing.assert_array_equal(img.pixels[..., 0], 255 - indices)
    np.testing.assert_allclose(functional_rgb(img), img.pixels / 255.0)


def test_a_pet_volume_without_suv_is_scaled_alike_on_every_slice():
    """Per slice, the 99.5th percentile of each slice set its scale: one activity took another
    colour on every slice. A volume's slices now share the volume's range."""
    from medfuse.runtime.functional import with_volume_range

    counts = np.zeros((4, 16, 16), np.float32)
    for i, top in enumerate((6.0, 8.0, 12.0, 12.0)):
        counts[i, 4:12, 4:12] = np.linspace(0, top, 64).reshape(8, 8)
    counts[:, 8, 8] = 6.0  # one activity present on every slice
    volume = MedicalImage(counts, Path("pet.nii.gz"), "nifti", modality="PT", is_volume=True)
    per_slice = [activity_to_unit(volume.slice(i))[0][8, 8] for i in range(4)]
    assert max(per_slice) - min(per_slice) > 0.2  # the old behaviour, still that of a lone 2D image
    ranged = with_volume_range(volume)
    units = [activity_to_unit(ranged.slice(i)) for i in range(4)]
    assert all(how == "percentile" for _, how in units)
    assert len({round(float(unit[8, 8]), 6) for unit, _ in units}) == 1
    suv = MedicalImage(counts, Path("pet.dcm"), "dicom", modality="PT", is_volume=True,
                       datasets=[_pt_dataset(**_suv_header())])
    assert with_volume_range(suv).value_range is None  # SUV is one scale already
