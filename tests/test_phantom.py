"""Phantom pairs: deterministic, registered, CT in HU with the tissue contrasts the spec names."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medfuse.runtime.io import read_image, read_volume
from medfuse.runtime.phantom import make_phantom_pair, write_phantom_dataset

SIZE = 64


def test_same_arguments_give_the_same_pair_and_seeds_differ():
    a, b = make_phantom_pair(SIZE, seed=3), make_phantom_pair(SIZE, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], make_phantom_pair(SIZE, seed=4)[0])
    assert a[0].dtype == a[1].dtype == np.float32 and a[0].shape == (SIZE, SIZE)


def test_ct_is_in_hounsfield_units_with_bright_bone():
    ct, _ = make_phantom_pair(128, seed=0)
    assert ct.min() == pytest.approx(-1000, abs=1)  # air
    assert ct.max() > 1000  # skull
    centre = ct[54:74, 54:74]
    assert -20 < np.median(centre) < 100  # brain


def test_mri_has_a_dark_skull_where_ct_is_bright():
    ct, mri = make_phantom_pair(128, seed=0)
    skull = ct > 800
    brain = (ct > 0) & (ct < 60)
    assert skull.sum() > 100 and mri[skull].mean() < 0.5 * mri[brain].mean()
    assert mri.max() > 0.8  # CSF / oedema are bright on this T2-like contrast


def test_pair_is_registered():
    ct, mri = make_phantom_pair(SIZE, seed=2)
    # Halfway between air and scalp in each image marks the outer head edge: same column per row.
    ct_head, mri_head = ct > (-1000 + 40) / 2, mri > 0.35 / 2
    rows = ct_head.any(axis=1)
    assert np.array_equal(rows, mri_head.any(axis=1)) and rows.sum() > SIZE // 2
    assert np.array_equal(ct_head[rows].argmax(axis=1), mri_head[rows].argmax(axis=1))


def test_slice_position_changes_the_anatomy():
    ct_mid, _ = make_phantom_pair(SIZE, seed=1, slice_pos=0.5)
    ct_top, _ = make_phantom_pair(SIZE, seed=1, slice_pos=0.9)
    assert (ct_top > -900).sum() < (ct_mid > -900).sum()  # the head narrows
    assert not np.array_equal(ct_mid, ct_top)


def test_noise_is_optional_and_deterministic():
    clean, noisy = make_phantom_pair(SIZE, seed=0), make_phantom_pair(SIZE, seed=0, noise=0.02)
    assert not np.array_equal(clean[0], noisy[0])
    assert np.array_equal(noisy[0], make_phantom_pair(SIZE, seed=0, noise=0.02)[0])
    assert noisy[1].min() >= 0


def test_png_dataset_is_laid_out_like_harvard(phantom_dir):
    names = sorted(p.name for p in (phantom_dir / "CT").iterdir())
    assert names == sorted(p.name for p in (phantom_dir / "MRI").iterdir()) and len(names) == 6
    assert all(re.fullmatch(r"\d{2}\d{3}\.png", n) for n in names)
    assert {n[:2] for n in names} == {"01", "02", "03"}
    ct = read_image(phantom_dir / "CT" / names[0])
    assert ct.bit_depth == 8 and not ct.is_hu and ct.pixels.max() == 255 and ct.pixels.min() == 0


def test_dicom_and_nifti_datasets_read_back_in_hu(phantom_dicom_dir, phantom_nifti_dir):
    expected, _ = make_phantom_pair(SIZE, seed=1, slice_pos=0.3)  # case 01, first slice, seed 0
    series = read_volume(phantom_dicom_dir / "CT" / "01")
    assert series.is_hu and np.allclose(series.pixels[0], np.clip(np.round(expected), -1024, 3071))
    nifti = read_volume(phantom_nifti_dir / "CT" / "01.nii.gz")
    assert nifti.is_hu and np.allclose(nifti.pixels[0], np.round(expected))


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="png"):
        write_phantom_dataset(tmp_path, fmt="jpeg")
