"""The Python API (`medfuse.runtime.api.FusionModel`) against medfuse-run and the fixture model.

The model is the max(ct, mri) ONNX fixture, so every fused image is predictable from the
preprocessed inputs; the API must give, from paths or from arrays, what medfuse-run writes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from medfuse.runtime import io
from medfuse.runtime.api import FusionModel, as_image, ct_hounsfield
from medfuse.runtime.cli import main
from medfuse.runtime.color import chroma_error
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.preprocess import PreprocessConfig, prepare_pair, to_uint8_image
from onnx_fixtures import expected_fused, write_model_dir
from run_main import exit_status

CFG = PreprocessConfig(input_size=32)  # phantoms are 64x64: the letterbox really resizes


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model"), precisions=("fp32",), preprocess=CFG)


@pytest.fixture
def model(model_dir):
    with FusionModel.open(model_dir, threads=1) as m:
        yield m


def expected(ct, mri, pair: str = "ct-mri") -> np.ndarray:
    prepared = prepare_pair(ct, mri, CFG, pair)
    return to_uint8_image(expected_fused(prepared.ct[None], prepared.mri[None])[0], prepared.geometry,
                          prepared.chroma)


def gray(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def run_cli(*args) -> int:
    return exit_status(main, ["medfuse-run", *args])


# ------------------------------------------------------------------------------ same result as medfuse-run
def test_fuse_paths_gives_what_medfuse_run_writes(model, model_dir, phantom_dir, tmp_path):
    ct, mri = phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png"
    assert run_cli(ct, mri, "-o", tmp_path / "cli.png", "--model", model_dir) == 0
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "cli.png")), cv2.COLOR_BGR2RGB)

    fused = model.fuse(ct, mri)
    assert fused.dtype == np.uint8 and fused.shape == (*gray(ct).shape, 3)
    np.testing.assert_array_equal(fused, written)
    np.testing.assert_array_equal(fused, expected(io.read_image(ct), io.read_image(mri)))
    assert model.fuse(str(ct), str(mri)).tobytes() == fused.tobytes()  # str paths too


def test_uint8_arrays_are_read_like_8bit_files(model, phantom_dir):
    ct, mri = phantom_dir / "CT" / "01002.png", phantom_dir / "MRI" / "01002.png"
    np.testing.assert_array_equal(model.fuse(gray(ct), gray(mri)), model.fuse(ct, mri))
    rgb_ct = np.repeat(gray(ct)[..., None], 3, axis=-1)  # gray saved as colour is accepted, as for files
    np.testing.assert_array_equal(model.fuse(rgb_ct, gray(mri)), model.fuse(ct, mri))


def test_hounsfield_array_is_windowed_like_the_dicom_file(model_dir, phantom_dicom_dir):
    ct_file = sorted((phantom_dicom_dir / "CT").rglob("*.dcm"))[1]
    mri_file = phantom_dicom_dir / "MRI" / ct_file.relative_to(phantom_dicom_dir / "CT")
    ct, mri = io.read_image(ct_file), io.read_image(mri_file)
    assert ct.is_hu and ct.pixels.min() < 0  # real HU, so the window matters
    with FusionModel.open(model_dir, threads=1) as m:
        from_files = m.fuse(ct_file, mri_file)
        from_arrays = m.fuse(ct_hounsfield(ct.pixels), mri.pixels.astype(np.uint16))
        np.testing.assert_array_equal(from_arrays, from_files)
        np.testing.assert_array_equal(from_files, expected(ct, mri))
    with FusionModel.open(model_dir, threads=1, window=(600.0, 2800.0)) as bone:
        assert bone.preprocess.ct_window_center == 600.0
        windowed = bone.fuse(ct_hounsfield(ct.pixels), mri.pixels)
    assert not np.array_equal(windowed, from_files)


def test_fuse_batch_keeps_order_and_each_size(model, phantom_dir):
    a = (phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png")
    b = (phantom_dir / "CT" / "02001.png", phantom_dir / "MRI" / "02001.png")
    wide_ct = cv2.resize(gray(b[0]), (96, 48), interpolation=cv2.INTER_NEAREST)
    wide_mri = cv2.resize(gray(b[1]), (96, 48), interpolation=cv2.INTER_NEAREST)
    out = model.fuse_batch([a, (wide_ct, wide_mri), b])
    assert [o.shape for o in out] == [(64, 64, 3), (48, 96, 3), (64, 64, 3)]
    np.testing.assert_array_equal(out[0], model.fuse(*a))
    np.testing.assert_array_equal(out[2], model.fuse(*b))
    assert model.fuse_batch([]) == []


def test_fuse_volume_matches_medfuse_run_nifti(model, model_dir, phantom_nifti_dir, tmp_path):
    ct, mri = phantom_nifti_dir / "CT" / "01.nii.gz", phantom_nifti_dir / "MRI" / "01.nii.gz"
    assert run_cli(ct, mri, "-o", tmp_path / "fused.nii.gz", "--model", model_dir) == 0

    fused = model.fuse_volume(ct, mri)
    ct_vol, mri_vol = io.read_volume(ct), io.read_volume(mri)
    assert fused.shape == (ct_vol.depth, *ct_vol.height_width, 3) and fused.dtype == np.uint8
    for i in range(ct_vol.depth):
        np.testing.assert_array_equal(fused[i], expected(ct_vol.slice(i), mri_vol.slice(i)))
        written = io.read_image(tmp_path / "fused.nii.gz", slice_index=i)  # the reader undoes RGB24
        np.testing.assert_array_equal(written.pixels.astype(np.uint8), fused[i])
    # (D, H, W) arrays: raw HU wrapped with ct_hounsfield, the MRI as it is
    assert ct_vol.is_hu
    np.testing.assert_array_equal(model.fuse_volume(ct_hounsfield(ct_vol.pixels), mri_vol.pixels), fused)


def test_functional_model_keeps_the_tracer_colours(tmp_path):
    from medfuse.runtime.phantom_functional import write_functional_dataset

    data = write_functional_dataset(tmp_path / "pet", n_cases=1, slices_per_case=1, size=64)
    pet_file = next((data / "PET").iterdir())
    mri_file = data / "MRI" / pet_file.name
    art = write_model_dir(tmp_path / "pet-model", preprocess=CFG, modality_pair="pet-mri")
    pet_rgb = cv2.cvtColor(cv2.imread(str(pet_file)), cv2.COLOR_BGR2RGB)
    with FusionModel.open(art, threads=1) as m:
        assert m.modality_pair == "pet-mri"
        fused = m.fuse(pet_rgb, gray(mri_file))
        np.testing.assert_array_equal(fused, m.fuse(pet_file, mri_file))
    np.testing.assert_array_equal(fused, expected(io.read_image(pet_file), io.read_image(mri_file), "pet-mri"))
    # the colour map survives: far closer to the PET's colours than a gray fusion would be
    gray_fused = np.repeat(fused.mean(axis=-1, keepdims=True), 3, axis=-1).astype(np.uint8)
    assert chroma_error(fused, pet_rgb) < chroma_error(gray_fused, pet_rgb) / 4


# ------------------------------------------------------------------------------ what was loaded, and how it reports
def test_model_says_what_it_loaded_through_logging_not_print(model_dir, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="medfuse"):
        with FusionModel.open(model_dir, precision="fp32", threads=1) as m:
            assert (m.backend, m.precision, m.modality_pair) == ("onnxruntime-cpu", "fp32", "ct-mri")
            assert m.artifact.name == "model.onnx" and m.preprocess.input_size == 32
            assert "auto" not in m.reason or "model.onnx" in m.reason
            assert "open" in repr(m)
        assert "closed" in repr(m)
    assert any("backend: onnxruntime-cpu fp32" in r.getMessage() for r in caplog.records)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_clahe_departure_is_logged(model_dir, caplog):
    with caplog.at_level(logging.INFO, logger="medfuse"), FusionModel.open(model_dir, clahe=True, threads=1) as m:
        assert m.preprocess.clahe
    assert any("clahe differs from the model's training" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------ bad input: one MedfuseError naming it
def test_nan_array_is_refused_naming_the_input(model, phantom_dir):
    mri = gray(phantom_dir / "MRI" / "01001.png").astype(np.float32)
    ct = mri.copy()
    ct[3, 4] = np.nan
    with pytest.raises(MedfuseError, match=r"<CT array>.*1 of 4096 pixel values are NaN"):
        model.fuse(ct, mri)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((64, 64), bool), "must hold real numbers"),
    (np.zeros((64, 64), np.complex64), "must hold real numbers"),
    (np.zeros((2, 64, 64, 1), np.uint8), r"has shape \(2, 64, 64, 1\); expected \(H, W\)"),
    (np.zeros((4, 64, 64), np.uint8), "a volume: use fuse_volume"),
    (np.zeros((0, 64), np.uint8), "has shape"),
    (42, "must be a file path, a MedicalImage or a numpy array, not int"),
    (np.ma.masked_less(np.arange(4096, dtype=np.float32).reshape(64, 64), 100), "is a masked array; fill it first"),
])
def test_arrays_that_are_not_images_are_refused(model, bad, message):
    with pytest.raises(MedfuseError, match=message):
        model.fuse(bad, np.zeros((64, 64), np.uint8))


def test_pair_checks_apply_to_arrays(model):
    with pytest.raises(MedfuseError, match="differ in size"):
        model.fuse(np.zeros((64, 64), np.uint8), np.zeros((64, 48), np.uint8))


def test_volume_and_image_calls_are_not_mixed_up(model, phantom_nifti_dir):
    volume = io.read_volume(phantom_nifti_dir / "CT" / "01.nii.gz")
    with pytest.raises(MedfuseError, match="is a volume; use fuse_volume"):
        model.fuse(volume, volume)
    with pytest.raises(MedfuseError, match="is a 2D image; use fuse"):
        model.fuse_volume(volume.slice(0), volume.slice(0))
    with pytest.raises(MedfuseError, match="slices"):
        model.fuse_volume(np.zeros((3, 64, 64), np.uint8), np.zeros((2, 64, 64), np.uint8))


def test_missing_file_is_named(model, tmp_path):
    with pytest.raises(MedfuseError, match="missing.png"):
        model.fuse(tmp_path / "missing.png", tmp_path / "missing.png")


def test_closed_model_refuses_work(model_dir):
    m = FusionModel.open(model_dir, threads=1)
    m.close()
    with pytest.raises(MedfuseError, match="closed"):
        m.fuse(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))


def test_bad_batch_size_is_refused_before_the_model_loads(tmp_path):
    with pytest.raises(MedfuseError, match="batch_size must be a whole number of at least 1, got 0"):
        FusionModel.open(tmp_path / "no-model-here", batch_size=0)
    with pytest.raises(MedfuseError, match="model folder not found"):
        FusionModel.open(tmp_path / "no-model-here")


def test_as_image_keeps_a_medical_image(phantom_dir):
    img = io.read_image(phantom_dir / "CT" / "01001.png")
    assert as_image(img, "CT") is img


def test_one_model_shared_by_threads_gives_each_caller_its_own_result(model, phantom_dir):
    from concurrent.futures import ThreadPoolExecutor

    names = sorted(p.name for p in (phantom_dir / "CT").glob("*.png"))
    pairs = [(phantom_dir / "CT" / n, phantom_dir / "MRI" / n) for n in names] * 3
    alone = [model.fuse(*p) for p in pairs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda p: model.fuse(*p), pairs))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))


@pytest.mark.parametrize("window, message", [
    ((float("nan"), 400.0), "window takes finite numbers"),
    ((40.0, float("inf")), "window takes finite numbers"),
    ((40.0, -1.0), "window's width must be positive, got -1"),
    ("40,400", r"window takes \(centre, width\) in HU"),
    ((40.0,), r"window takes \(centre, width\) in HU"),
])
def test_bad_window_is_refused_before_the_model_loads(tmp_path, window, message):
    """A NaN window used to fuse to NaN, reported as a damaged model; a string died in a TypeError."""
    with pytest.raises(MedfuseError, match=message):
        FusionModel.open(tmp_path / "no-model-here", window=window)


def test_batch_items_that_are_not_pairs_are_refused(model):
    img = np.zeros((64, 64), np.uint8)
    with pytest.raises(MedfuseError, match=r"fuse_batch takes \(ct, mri\) pairs; item #1 is tuple of 1"):
        model.fuse_batch([(img, img), (img,)])
    with pytest.raises(MedfuseError, match="item 0 is ndarray"):
        model.fuse_batch([img])


def test_a_bad_array_in_a_batch_is_named_by_its_place(model):
    img = np.zeros((64, 64), np.uint8)
    bad = np.full((64, 64), np.nan, np.float32)
    with pytest.raises(MedfuseError, match=r"<MRI #2 array>: 4096 of 4096 pixel values are NaN"):
        model.fuse_batch([(img, img), (img, img), (img, bad)])


def test_hounsfield_array_given_to_a_pet_model_is_called_a_ct(tmp_path):
    art = write_model_dir(tmp_path / "pet-model", preprocess=CFG, modality_pair="pet-mri")
    with FusionModel.open(art, threads=1) as m, pytest.raises(MedfuseError, match=r"is a CT image \(DICOM Modality\)"):
        m.fuse(ct_hounsfield(np.zeros((64, 64), np.int16)), np.zeros((64, 64), np.uint8))


def test_missing_model_is_named_in_the_api_s_words(tmp_path):
    with pytest.raises(MedfuseError, match=r"model folder not found \(from the model argument\)"):
        FusionModel.open(tmp_path / "nowhere")
