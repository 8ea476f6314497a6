"""A DICOM paired with a NIfTI: accepted only when both pixel grids lie alike in the patient.

medfuse's NIfTI reader returns voxel axes as stored, its DICOM reader rows and columns; nothing
is reoriented. The phantom's MR series (axial, 64x64, 0.9 mm, 3 slices at 5 mm) is written as a
NIfTI in three layouts: medfuse's own order (row, col, slice) with the matching RAS affine
(accepted, pixel for pixel the DICOM's), dcm2niix's usual layout (columns as voxel axis 0, rows
reversed: the pixels really come out turned) and the DICOM array saved with a naive diagonal
affine (its geometry says turned). Both of the latter are refused, by the CLI and in training.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from medfuse.runtime import io
from medfuse.runtime.cli import main
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.phantom import write_phantom_dataset
from medfuse.runtime.phantom_dicom import PHANTOM_SPACING_MM
from medfuse.runtime.preprocess import PreprocessConfig, check_volume_pair, prepare_pair, to_uint8_image
from medfuse.runtime.writers import dicom_affine
from medfuse.train.data import PairDataset, find_pairs
from onnx_fixtures import expected_fused, write_model_dir
from run_main import run_main

CFG = PreprocessConfig(input_size=32)
ROW, COL, THICK = PHANTOM_SPACING_MM
SIZE, DEPTH = 64, 3


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model"), precisions=("fp32",), preprocess=CFG)


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    """CT/01/ and MRI/01/ DICOM series of one phantom case (IOP 1,0,0,0,1,0; IPP -115,-115,z)."""
    return write_phantom_dataset(tmp_path_factory.mktemp("series"), n_cases=1, slices_per_case=DEPTH,
                                 size=SIZE, fmt="dicom")


def _medfuse_affine() -> np.ndarray:
    """RAS affine of voxel (row, col, slice) for the phantom's axial grid, worked out by hand:
    the row index moves along the DICOM column direction (0, 1, 0) LPS = -y RAS, the column
    index along (1, 0, 0) LPS = -x RAS; the first pixel is at (-115, -115, z0) LPS."""
    z0 = -(DEPTH - 1) / 2.0 * THICK
    return np.array([[0.0, -COL, 0.0, 115.0],
                     [-ROW, 0.0, 0.0, 115.0],
                     [0.0, 0.0, THICK, z0],
                     [0.0, 0.0, 0.0, 1.0]])


def _dcm2niix_affine() -> np.ndarray:
    """dcm2niix's usual layout: voxel i along the DICOM row direction (columns), j along the
    column direction but with the rows reversed, so its affine is diagonal (-x, +y in RAS)."""
    z0 = -(DEPTH - 1) / 2.0 * THICK
    return np.array([[-COL, 0.0, 0.0, 115.0],
                     [0.0, ROW, 0.0, 115.0 - (SIZE - 1) * ROW],
                     [0.0, 0.0, THICK, z0],
                     [0.0, 0.0, 0.0, 1.0]])


def write_mri_nifti(path: Path, mr_volume: np.ndarray, layout: str) -> Path:
    """The MR series (D, H, W) as a NIfTI in one of three layouts (see the module docstring)."""
    in_order = np.moveaxis(mr_volume, 0, -1)  # (row, col, slice)
    data, affine = {
        "medfuse": (in_order, _medfuse_affine()),
        "dcm2niix": (np.transpose(mr_volume[:, ::-1, :], (2, 1, 0)), _dcm2niix_affine()),
        "naive": (in_order, np.diag([ROW, COL, THICK, 1.0])),
    }[layout]
    image = nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.float32), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: ")
    for needle in needles:
        assert needle in err, err


def test_the_hand_written_affine_is_medfuses_own(series):
    """The accepted layout is exactly what medfuse writes for a DICOM reference."""
    assert np.allclose(dicom_affine(io.read_volume(series / "MRI" / "01")), _medfuse_affine())


# ------------------------------------------------------------------------------ accepted
def test_nifti_in_dicom_order_is_accepted_and_registered(capsys, tmp_path, model, series):
    mr_volume = io.read_volume(series / "MRI" / "01").pixels
    mri = write_mri_nifti(tmp_path / "mri.nii.gz", mr_volume, "medfuse")
    ct = series / "CT" / "01" / "01002.dcm"  # the middle slice, which the NIfTI gives by default
    a, b = io.read_image(ct), io.read_image(mri)
    np.testing.assert_array_equal(b.pixels, io.read_image(series / "MRI" / "01" / "01002.dcm").pixels)
    out = tmp_path / "fused.png"
    code, _, err = run_main(capsys, main, ["medfuse-run", ct, mri, "-o", out, "--model", model])
    assert code == 0, err
    prepared = prepare_pair(a, b, CFG)
    expected = to_uint8_image(expected_fused(prepared.ct[None], prepared.mri[None])[0], prepared.geometry)
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB), expected)


def test_nifti_in_dicom_order_trains_like_the_dicom_series(tmp_path, series):
    mixed = tmp_path / "mixed"
    shutil.copytree(series / "CT", mixed / "CT")
    (mixed / "MRI").mkdir()
    write_mri_nifti(mixed / "MRI" / "01.nii.gz", io.read_volume(series / "MRI" / "01").pixels, "medfuse")
    check_volume_pair(io.read_volume(mixed / "CT" / "01"), io.read_volume(mixed / "MRI" / "01.nii.gz"))
    dicom_only = PairDataset(find_pairs(series, "finetune")[0], CFG)
    both = PairDataset(find_pairs(mixed, "finetune")[0], CFG)
    assert len(both) == DEPTH
    np.testing.assert_array_equal(both._data.numpy(), dicom_only._data.numpy())


# ------------------------------------------------------------------------------ refused
@pytest.mark.parametrize("layout", ["dcm2niix", "naive"])
def test_transposed_nifti_is_refused_by_the_cli(capsys, tmp_path, model, series, layout):
    mri = write_mri_nifti(tmp_path / "mri.nii.gz", io.read_volume(series / "MRI" / "01").pixels, layout)
    ct = series / "CT" / "01" / "01002.dcm"
    out = tmp_path / "fused.png"
    code, _, err = run_main(capsys, main, ["medfuse-run", ct, mri, "-o", out, "--model", model])
    _one_line_error(code, err, str(ct), str(mri), "(transposed", "medfuse does not reorient",
                    "both to NIfTI with dcm2niix")
    assert not out.exists()


@pytest.mark.parametrize("layout", ["dcm2niix", "naive"])
def test_transposed_nifti_is_refused_in_training(tmp_path, series, layout):
    mixed = tmp_path / "mixed"
    shutil.copytree(series / "CT", mixed / "CT")
    (mixed / "MRI").mkdir()
    mri = write_mri_nifti(mixed / "MRI" / "01.nii.gz", io.read_volume(series / "MRI" / "01").pixels, layout)
    pairs, _ = find_pairs(mixed, "finetune")
    with pytest.raises(MedfuseError, match=r"\(transposed") as info:
        PairDataset(pairs, CFG)
    assert str(mri) in str(info.value) and str(mixed / "CT" / "01") in str(info.value)


def test_mirrored_shifted_or_ungeometric_niftis_are_refused(tmp_path, series):
    """Same axes but flipped, another slice, or no affine at all: each said in its own words."""
    mr_volume = io.read_volume(series / "MRI" / "01").pixels
    ct = io.read_image(series / "CT" / "01" / "01002.dcm")
    good = io.read_image(write_mri_nifti(tmp_path / "mri.nii.gz", mr_volume, "medfuse"))
    prepare_pair(ct, good, CFG)
    flipped_affine = good.affine @ np.array([[-1, 0, 0, SIZE - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    with pytest.raises(MedfuseError, match="mirrored up-down"):
        prepare_pair(ct, dataclasses.replace(good, affine=flipped_affine), CFG)
    with pytest.raises(MedfuseError, match=r"first pixel lies 5\.0 mm"):
        prepare_pair(ct, dataclasses.replace(good, slice_index=2), CFG)
    with pytest.raises(MedfuseError, match="no usable affine"):
        prepare_pair(ct, dataclasses.replace(good, affine=None), CFG)
    bare = nib.Nifti1Image(np.moveaxis(mr_volume, 0, -1), _medfuse_affine())
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    nib.save(bare, tmp_path / "bare.nii")
    with pytest.raises(MedfuseError, match="no usable affine"):
        prepare_pair(ct, io.read_image(tmp_path / "bare.nii"), CFG)


def test_a_dicom_without_orientation_is_not_paired_with_a_nifti(tmp_path, series):
    ct = io.read_image(series / "CT" / "01" / "01002.dcm")
    good = io.read_image(write_mri_nifti(tmp_path / "mri.nii.gz", io.read_volume(series / "MRI" / "01").pixels,
                                         "medfuse"))
    header = ct.datasets[0].copy()
    del header.ImageOrientationPatient
    with pytest.raises(MedfuseError, match="no ImageOrientationPatient"):
        prepare_pair(dataclasses.replace(ct, datasets=[header]), good, CFG)


# ------------------------------------------------------------------------------ unchanged
def test_pairs_of_one_format_and_png_pairs_are_not_judged_by_it(tmp_path, series):
    """Two DICOMs, two NIfTIs (even naive ones) and PNG beside NIfTI keep today's behaviour."""
    mr_volume = io.read_volume(series / "MRI" / "01").pixels
    prepare_pair(io.read_image(series / "CT" / "01" / "01002.dcm"),
                 io.read_image(series / "MRI" / "01" / "01002.dcm"), CFG)
    naive = io.read_image(write_mri_nifti(tmp_path / "naive.nii.gz", mr_volume, "naive"))
    prepare_pair(dataclasses.replace(naive, path=tmp_path / "ct.nii.gz"), naive, CFG)
    png = io.MedicalImage(np.zeros((SIZE, SIZE), np.float32), tmp_path / "ct.png", "png", bit_depth=8)
    prepare_pair(png, naive, CFG)
