"""medfuse-run end to end on phantom files: every input kind, folders with failures, options, errors.

The model is the max(ct, mri) fixture, so each fused image can be predicted exactly from the
preprocessed inputs. The command runs in-process through `main()` to see real exit codes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest

from dicom_check import dciodvfy_errors, enhanced_image
from medfuse.runtime import io
from medfuse.runtime.cli import main
from medfuse.runtime.preprocess import PreprocessConfig, prepare_pair, to_uint8_image
from onnx_fixtures import expected_fused, write_model, write_model_dir
from run_main import run_main

CFG = PreprocessConfig(input_size=32)  # phantoms are 64x64: the letterbox really resizes


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model"), precisions=("fp32",), preprocess=CFG)


def medfuse_run(capsys, *args) -> tuple[int, str, str]:
    return run_main(capsys, main, ["medfuse-run", *args])


def expected_rgb(ct: Path, mri: Path, slice_index: int | None = None) -> np.ndarray:
    a, b = io.read_image(ct, slice_index=slice_index), io.read_image(mri, slice_index=slice_index)
    prepared = prepare_pair(a, b, CFG)
    return to_uint8_image(expected_fused(prepared.ct[None], prepared.mri[None])[0], prepared.geometry)


def read_png_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------ input kinds
def test_png_pair(capsys, tmp_path, model, phantom_dir):
    ct, mri = phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png"
    code, _, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "fused.png", "--model", model)
    assert code == 0, err
    assert "onnxruntime-cpu fp32" in err
    np.testing.assert_array_equal(read_png_rgb(tmp_path / "fused.png"), expected_rgb(ct, mri))


def test_dicom_pair_to_secondary_capture(capsys, tmp_path, model, phantom_dicom_dir):
    ct, mri = phantom_dicom_dir / "CT" / "01" / "01002.dcm", phantom_dicom_dir / "MRI" / "01" / "01002.dcm"
    out = tmp_path / "fused.dcm"
    code, _, err = medfuse_run(capsys, ct, mri, "-o", out, "--model", model)
    assert code == 0, err
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert ds.PatientID == pydicom.dcmread(ct).PatientID
    np.testing.assert_array_equal(ds.pixel_array, expected_rgb(ct, mri))
    assert dciodvfy_errors(out) == []
    src = pydicom.dcmread(ct)  # the CT's grid and place: a viewer can link the fused image to the CT
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert list(ds.ImagePositionPatient) == list(src.ImagePositionPatient)
    assert ds.SeriesDescription == "medfuse CT-MRI fusion"


def test_functional_pair_to_dicom_is_described_as_pet_mri(capsys, tmp_path):
    from medfuse.runtime.phantom_functional import write_functional_dataset

    data = write_functional_dataset(tmp_path / "pet", n_cases=1, slices_per_case=1, size=64)
    pet = next((data / "PET").iterdir())
    pet_model = write_model_dir(tmp_path / "pet-model", preprocess=CFG, modality_pair="pet-mri")
    code, _, err = medfuse_run(capsys, pet, data / "MRI" / pet.name, "-o", tmp_path / "f.dcm", "--model", pet_model)
    assert code == 0, err
    ds = pydicom.dcmread(tmp_path / "f.dcm")
    assert ds.SeriesDescription == "medfuse PET-MRI fusion" and ds.DerivationDescription.startswith("PET-MRI")


def test_nifti_slice_pair(capsys, tmp_path, model, phantom_nifti_dir):
    ct, mri = phantom_nifti_dir / "CT" / "01.nii.gz", phantom_nifti_dir / "MRI" / "01.nii.gz"
    code, _, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "s.png", "--slice", 0, "--model", model)
    assert code == 0, err
    np.testing.assert_array_equal(read_png_rgb(tmp_path / "s.png"), expected_rgb(ct, mri, slice_index=0))


def test_folder_of_pairs_with_json_summary(capsys, tmp_path, model, phantom_dir):
    out = tmp_path / "fused"
    code, stdout, err = medfuse_run(capsys, phantom_dir / "CT", phantom_dir / "MRI", "-o", out, "--model", model,
                                    "--batch-size", 4, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    names = sorted(p.stem for p in (phantom_dir / "CT").glob("*.png"))
    assert summary["mode"] == "folder" and summary["counts"] == {"total": len(names), "ok": len(names), "failed": 0}
    assert sorted(p.stem for p in out.glob("*.png")) == names
    assert summary["preprocess"]["input_size"] == 32 and summary["backend"] == "onnxruntime-cpu"
    name = names[-1]
    np.testing.assert_array_equal(read_png_rgb(out / f"{name}.png"),
                                  expected_rgb(phantom_dir / "CT" / f"{name}.png", phantom_dir / "MRI" / f"{name}.png"))


def test_threads_option_sets_onnx_runtime_threads(capsys, tmp_path, model, phantom_dir):
    from medfuse.runtime.backends.onnxruntime_backend import physical_cores

    ct, mri = phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png"
    code, stdout, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "a.png", "--model", model, "--json",
                                    "--threads", 1)
    assert code == 0, err
    assert json.loads(stdout)["threads"] == 1
    code, stdout, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "b.png", "--model", model, "--json")
    assert code == 0, err
    assert json.loads(stdout)["threads"] == physical_cores()
    np.testing.assert_array_equal(read_png_rgb(tmp_path / "a.png"), read_png_rgb(tmp_path / "b.png"))


def test_folder_with_a_corrupt_pair_writes_the_others_and_exits_non_zero(capsys, tmp_path, model, phantom_dir):
    ct_dir, mri_dir = tmp_path / "CT", tmp_path / "MRI"
    shutil.copytree(phantom_dir / "CT", ct_dir)
    shutil.copytree(phantom_dir / "MRI", mri_dir)
    (mri_dir / "01002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (ct_dir / "99001.png").write_bytes((ct_dir / "01001.png").read_bytes())  # no MRI partner
    code, stdout, err = medfuse_run(capsys, ct_dir, mri_dir, "-o", tmp_path / "out", "--model", model, "--json")
    assert code == 1
    summary = json.loads(stdout)
    assert [f["name"] for f in summary["failures"]] == ["01002"]
    assert "01002.png" in summary["failures"][0]["error"]
    assert summary["counts"]["ok"] == summary["counts"]["total"] - 1
    assert not (tmp_path / "out" / "01002.png").exists() and (tmp_path / "out" / "01001.png").is_file()
    assert summary["unpaired"] == [str(ct_dir / "99001.png")]
    assert "1 of" in err and "failed" in err


def test_nested_dicom_folders_pair_by_relative_name(capsys, tmp_path, model, phantom_dicom_dir):
    code, _, err = medfuse_run(capsys, phantom_dicom_dir / "CT", phantom_dicom_dir / "MRI", "-o", tmp_path / "o",
                               "--model", model)
    assert code == 0, err
    assert sorted(str(p.relative_to(tmp_path / "o")) for p in (tmp_path / "o").rglob("*.png")) == \
        sorted(str(p.relative_to(phantom_dicom_dir / "CT").with_suffix(".png"))
               for p in (phantom_dicom_dir / "CT").rglob("*.dcm"))


def test_folders_of_nifti_volumes_give_fused_volumes(capsys, tmp_path, model, phantom_nifti_dir):
    """A volume in, a volume out: each NIfTI pair of a folder is fused whole (it was one slice
    per volume, as a PNG, without a word); a pair that fails is reported and the others written."""
    ct, mri = tmp_path / "CT", tmp_path / "MRI"
    for side, folder in (("CT", ct), ("MRI", mri)):
        folder.mkdir()
        for name in ("sub-01.nii.gz", "sub-02.nii.gz"):
            shutil.copyfile(phantom_nifti_dir / side / "01.nii.gz", folder / name)
    img = nib.load(mri / "sub-02.nii.gz")
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, :2], img.affine, img.header), mri / "sub-02.nii.gz")
    code, stdout, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "o", "--side-by-side", tmp_path / "s",
                                    "--json", "--model", model)
    assert code == 1, err
    summary = json.loads(stdout)
    assert summary["counts"] == {"total": 2, "ok": 1, "failed": 1}
    assert summary["failures"][0]["name"] == "sub-02" and "has 3 slices" in summary["failures"][0]["error"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["sub-01.nii.gz"]
    single = tmp_path / "single.nii.gz"
    assert medfuse_run(capsys, ct / "sub-01.nii.gz", mri / "sub-01.nii.gz", "-o", single, "--model", model)[0] == 0
    voxels = [np.asanyarray(nib.load(path).dataobj) for path in (tmp_path / "o" / "sub-01.nii.gz", single)]
    assert voxels[0].shape == nib.load(ct / "sub-01.nii.gz").shape and voxels[0].tobytes() == voxels[1].tobytes()
    assert (tmp_path / "s" / "sub-01.png").is_file()


def test_nifti_volume_keeps_the_source_affine(capsys, tmp_path, model, phantom_nifti_dir):
    ct, mri = phantom_nifti_dir / "CT" / "01.nii.gz", phantom_nifti_dir / "MRI" / "01.nii.gz"
    out = tmp_path / "fused.nii.gz"
    code, _, err = medfuse_run(capsys, ct, mri, "-o", out, "--model", model, "--batch-size", 2)
    assert code == 0, err
    src, fused = nib.load(ct), nib.load(out)
    np.testing.assert_allclose(fused.affine, src.affine)
    assert fused.shape == src.shape
    middle = src.shape[2] // 2
    back = io.read_image(out, slice_index=middle)  # the reader undoes the writer's RGB24 voxel layout
    assert back.is_rgb
    np.testing.assert_array_equal(back.pixels.astype(np.uint8), expected_rgb(ct, mri, slice_index=middle))


def test_nifti_output_keeps_the_source_header_codes_and_units(capsys, tmp_path, model, phantom_nifti_dir):
    """An MNI sform (code 4) beside a scanner qform (code 1): both used to become code 1, with the
    qform rebuilt from the sform, units unknown and the description empty."""
    pair = []
    for side in ("CT", "MRI"):
        img = nib.load(phantom_nifti_dir / side / "01.nii.gz")
        header = img.header.copy()
        sform = img.affine.copy()
        sform[0, 1] = 0.05  # a slight shear: not representable as a qform
        header.set_sform(sform, code=4)
        header.set_qform(img.affine, code=1)
        header.set_xyzt_units("mm", "sec")
        header["descrip"] = b"T1 MPRAGE"
        path = tmp_path / f"{side}.nii.gz"
        nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), None, header), path)
        pair.append(path)
    out = tmp_path / "fused.nii.gz"
    code, _, err = medfuse_run(capsys, *pair, "-o", out, "--model", model)
    assert code == 0, err
    src, fused = nib.load(pair[0]).header, nib.load(out).header
    for getter in ("get_qform", "get_sform"):
        (a, code_a), (b, code_b) = getattr(src, getter)(coded=True), getattr(fused, getter)(coded=True)
        np.testing.assert_allclose(b, a, atol=1e-5)
        assert code_a == code_b
    assert fused.get_xyzt_units() == ("mm", "sec") and bytes(fused["descrip"]).startswith(b"medfuse fusion; T1 MPRAGE")


def test_dicom_series_to_series_and_to_nifti(capsys, tmp_path, model, phantom_dicom_dir):
    ct, mri = phantom_dicom_dir / "CT" / "02", phantom_dicom_dir / "MRI" / "02"
    code, _, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "series", "--model", model)
    assert code == 0, err
    files = sorted((tmp_path / "series").glob("*.dcm"))
    assert len(files) == len(list(ct.glob("*.dcm")))
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files}
    assert len(uids) == 1 and dciodvfy_errors(files[0]) == []
    code, _, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "v.nii", "--model", model)
    assert code == 0, err
    assert nib.load(tmp_path / "v.nii").shape[:2] == (64, 64)


def test_messages_keep_brackets_of_paths_and_pip_extras(capsys, tmp_path, model, phantom_dir):
    """Rich took 'medfuse[gpu]' and '[bold]' in a path for markup and printed them without."""
    folder = tmp_path / "with-engine"
    shutil.copytree(model, folder)
    (folder / "model.plan").write_bytes(b"engine")
    (folder / "model.plan.json").write_text(json.dumps({"tensorrt_version": "10.9.0", "compute_capability": [8, 9],
                                                        "precision": "fp16"}))
    out = tmp_path / "[bold]x" / "f.png"
    out.parent.mkdir()
    code, _, err = medfuse_run(capsys, phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png", "-o", out,
                               "--model", folder)
    assert code == 0, err
    assert "pip install 'medfuse[gpu]'" in err and f"wrote {out}" in err


# ------------------------------------------------------------------------------ options
def test_overwrite(capsys, tmp_path, model, phantom_dir):
    args = [phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png", "-o", tmp_path / "f.png",
            "--model", model]
    (tmp_path / "f.png").write_bytes(b"keep me")
    code, _, err = medfuse_run(capsys, *args)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert (tmp_path / "f.png").read_bytes() == b"keep me"
    code, _, err = medfuse_run(capsys, *args, "--overwrite")
    assert code == 0, err
    assert read_png_rgb(tmp_path / "f.png").shape == (64, 64, 3)


def test_folder_refuses_existing_outputs_before_work(capsys, tmp_path, model, phantom_dir):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "01001.png").write_bytes(b"x")
    code, _, err = medfuse_run(capsys, phantom_dir / "CT", phantom_dir / "MRI", "-o", tmp_path / "o", "--model", model)
    assert code == 2 and "already exists" in err
    assert len(list((tmp_path / "o").iterdir())) == 1


def test_side_by_side_and_metrics(capsys, tmp_path, model, phantom_dir):
    ct, mri = phantom_dir / "CT" / "02002.png", phantom_dir / "MRI" / "02002.png"
    code, stdout, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "f.png", "--side-by-side",
                                    tmp_path / "sbs.png", "--metrics", "--json", "--model", model)
    assert code == 0, err
    sbs = read_png_rgb(tmp_path / "sbs.png")
    assert sbs.shape[0] == 64 and sbs.shape[1] > 3 * 64
    np.testing.assert_array_equal(sbs[:, -64:], read_png_rgb(tmp_path / "f.png"))
    metrics = json.loads(stdout)["outputs"][0]["metrics"]
    assert {"EN", "SSIM", "Qabf", "PSNR"} <= set(metrics) and metrics["EN"] > 0
    assert metrics["CTDim"] >= 0 and "ChromaErr" not in metrics  # a CT-MRI pair: bone brightness, no colour


def test_window_and_clahe_overrides_change_preprocessing(capsys, tmp_path, model, phantom_dicom_dir):
    ct, mri = phantom_dicom_dir / "CT" / "01" / "01001.dcm", phantom_dicom_dir / "MRI" / "01" / "01001.dcm"
    code, stdout, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "b.png", "--window-preset", "bone",
                                    "--clahe", "--json", "--model", model)
    assert code == 0, err
    pre = json.loads(stdout)["preprocess"]
    assert (pre["ct_window_center"], pre["ct_window_width"], pre["clahe"]) == (600.0, 2800.0, True)
    assert "differs from the model's training" in err
    medfuse_run(capsys, ct, mri, "-o", tmp_path / "d.png", "--model", model)
    assert not np.array_equal(read_png_rgb(tmp_path / "b.png"), read_png_rgb(tmp_path / "d.png"))


@pytest.mark.parametrize("args, needle", [
    (["--window", "40"], "CENTRE,WIDTH"),
    (["--window", "40,0"], "positive"),
    (["--window", "40,400", "--window-preset", "brain"], "not both"),
    (["--window-preset", "lungs"], "brain"),
])
def test_bad_window_options(capsys, tmp_path, model, phantom_dir, args, needle):
    code, _, err = medfuse_run(capsys, phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png",
                               "-o", tmp_path / "f.png", "--model", model, *args)
    assert code == 2 and needle in err and "Traceback" not in err


# ------------------------------------------------------------------------------ errors
def test_mismatched_pair_names_both_files(capsys, tmp_path, model, phantom_dir):
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((48, 64), np.uint8))
    code, _, err = medfuse_run(capsys, phantom_dir / "CT" / "01001.png", small, "-o", tmp_path / "f.png",
                               "--model", model)
    assert code == 2 and "01001.png" in err and "small.png" in err and "Traceback" not in err
    assert not (tmp_path / "f.png").exists()


def test_foreign_onnx_is_one_line(capsys, tmp_path, phantom_dir):
    write_model(tmp_path / "m" / "model.onnx", names=("image", "mask", "out"))
    code, _, err = medfuse_run(capsys, phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png",
                               "-o", tmp_path / "f.png", "--model", tmp_path / "m")
    assert code == 2 and "not a medfuse fusion model" in err and str(tmp_path / "m" / "model.onnx") in err
    assert len(err.strip().splitlines()) <= 2  # the backend line and the error


def test_no_model_says_how_to_make_one(capsys, tmp_path, phantom_dir, monkeypatch):
    monkeypatch.delenv("MEDFUSE_MODEL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, _, err = medfuse_run(capsys, phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png",
                               "-o", tmp_path / "f.png")
    assert code == 2 and "medfuse-export" in err


@pytest.mark.parametrize("out, needle", [("f.jpg", ".png or .dcm"), ("f.png", "both be files or both be folders")])
def test_output_and_input_kind_errors(capsys, tmp_path, model, phantom_dir, out, needle):
    mri = phantom_dir / "MRI" / "01001.png" if out == "f.jpg" else phantom_dir / "MRI"
    code, _, err = medfuse_run(capsys, phantom_dir / "CT" / "01001.png", mri, "-o", tmp_path / out, "--model", model)
    assert code == 2 and needle in err


def test_explicit_backend_missing_is_one_line(capsys, tmp_path, model, phantom_dir):
    code, _, err = medfuse_run(capsys, phantom_dir / "CT" / "01001.png", phantom_dir / "MRI" / "01001.png",
                               "-o", tmp_path / "f.png", "--model", model, "--backend", "tensorrt")
    assert code == 2 and "model.plan" in err


def test_cli_module_imports_no_heavy_library():
    heavy = ("numpy", "cv2", "onnxruntime", "pydicom", "nibabel", "torch")
    code = f"import sys, medfuse.runtime.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_lists_the_options():
    done = subprocess.run([sys.executable, "-m", "medfuse.runtime.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for option in ("--model", "--backend", "--precision", "--batch-size", "--window", "--window-preset", "--clahe",
                   "--side-by-side", "--metrics", "--json", "--overwrite"):
        assert option in done.stdout


# ------------------------------------------------------------------------------ refused before harm
def _pair(phantom_dir, name="01001.png") -> tuple[Path, Path]:
    return phantom_dir / "CT" / name, phantom_dir / "MRI" / name


def _one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_nan_pixels_are_refused_naming_the_file(capsys, tmp_path, model, phantom_dir):
    ct = io.read_image(_pair(phantom_dir)[0]).pixels.astype(np.float32)
    ct[10, 10] = np.nan
    bad = tmp_path / "ct.tiff"
    cv2.imwrite(str(bad), ct)
    code, _, err = medfuse_run(capsys, bad, _pair(phantom_dir)[1], "-o", tmp_path / "f.png", "--model", model)
    _one_line_error(code, err, "NaN or infinite")
    assert str(bad) in err and not (tmp_path / "f.png").exists()


def test_damaged_onnx_weights_are_refused_by_the_manifest_checksum(capsys, tmp_path, model, phantom_dir):
    damaged = tmp_path / "m"
    shutil.copytree(model, damaged)
    onnx = damaged / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-16:] = b"\xff" * 16  # the weights' bytes: the file still parses and runs
    onnx.write_bytes(bytes(data))
    code, _, err = medfuse_run(capsys, *_pair(phantom_dir), "-o", tmp_path / "f.png", "--model", damaged)
    _one_line_error(code, err, "sha256")
    assert not (tmp_path / "f.png").exists()


def test_non_finite_engine_output_fails_instead_of_writing_black():
    from medfuse.runtime.errors import MedfuseError
    from medfuse.runtime.fuse import Fuser

    class NanRunner:
        max_batch, path = None, Path("model.onnx")

        def infer(self, feeds):
            return {"fused": np.full((len(feeds["ct"]), 3, 32, 32), np.nan, np.float32)}

    prepared = prepare_pair(io.MedicalImage(np.zeros((32, 32), np.float32), Path("ct.png"), "png", bit_depth=8),
                            io.MedicalImage(np.ones((32, 32), np.float32), Path("mri.png"), "png", bit_depth=8), CFG)
    with pytest.raises(MedfuseError, match="NaN or infinite"):
        Fuser(NanRunner(), CFG).run([prepared])


@pytest.mark.parametrize("window", ["nan,400", "40,inf"])
def test_non_finite_window_is_refused(capsys, tmp_path, model, phantom_dir, window):
    code, _, err = medfuse_run(capsys, *_pair(phantom_dir), "-o", tmp_path / "f.png", "--model", model,
                               "--window", window)
    _one_line_error(code, err, "finite")


def test_colour_image_as_ct_is_refused(capsys, tmp_path, model, phantom_dir):
    gray = cv2.imread(str(_pair(phantom_dir)[0]), cv2.IMREAD_GRAYSCALE)
    colour = cv2.applyColorMap(gray, cv2.COLORMAP_JET)  # a PET-like pseudo-colour map
    pet = tmp_path / "pet.png"
    cv2.imwrite(str(pet), colour)
    code, _, err = medfuse_run(capsys, pet, _pair(phantom_dir)[1], "-o", tmp_path / "f.png", "--model", model)
    _one_line_error(code, err, "colour image")
    assert "pet-mri" in err


def test_swapped_dicom_inputs_are_refused_by_their_modality(capsys, tmp_path, model, phantom_dicom_dir):
    ct, mri = phantom_dicom_dir / "CT" / "01" / "01002.dcm", phantom_dicom_dir / "MRI" / "01" / "01002.dcm"
    code, _, err = medfuse_run(capsys, mri, ct, "-o", tmp_path / "f.png", "--model", model)
    _one_line_error(code, err, "arguments swapped")


def test_slice_of_a_2d_image_is_refused(capsys, tmp_path, model, phantom_dir):
    code, _, err = medfuse_run(capsys, *_pair(phantom_dir), "-o", tmp_path / "f.png", "--model", model,
                               "--slice", 3)
    _one_line_error(code, err, "2D PNG image")


def test_overwrite_never_replaces_a_folder_holding_other_files(capsys, tmp_path, model, phantom_dicom_dir):
    study = tmp_path / "study"
    study.mkdir()
    (study / "report.docx").write_text("the radiologist's report")
    code, _, err = medfuse_run(capsys, phantom_dicom_dir / "CT" / "01", phantom_dicom_dir / "MRI" / "01",
                               "-o", study, "--model", model, "--overwrite")
    _one_line_error(code, err, "report.docx")
    assert (study / "report.docx").read_text() == "the radiologist's report"


def test_output_over_or_inside_the_inputs_is_refused(capsys, tmp_path, model, phantom_dir):
    ct, mri = _pair(phantom_dir)
    code, _, err = medfuse_run(capsys, ct, mri, "-o", ct, "--model", model, "--overwrite")
    _one_line_error(code, err, "replace it")
    code, _, err = medfuse_run(capsys, phantom_dir / "CT", phantom_dir / "MRI", "-o", phantom_dir / "CT" / "fused",
                               "--model", model)
    _one_line_error(code, err, "inside the input folder")
    assert not (phantom_dir / "CT" / "fused").exists()


@pytest.mark.parametrize("side", ["same", "jpg"])
def test_side_by_side_must_be_a_png_of_its_own(capsys, tmp_path, model, phantom_dir, side):
    out = tmp_path / "f.png"
    figure = out if side == "same" else tmp_path / "s.jpg"
    code, _, err = medfuse_run(capsys, *_pair(phantom_dir), "-o", out, "--model", model, "--side-by-side", figure)
    _one_line_error(code, err, "--side-by-side")
    assert not out.exists()


def test_folder_output_that_is_a_file_is_one_error(capsys, tmp_path, model, phantom_dir):
    taken = tmp_path / "fused"
    taken.write_text("")
    code, _, err = medfuse_run(capsys, phantom_dir / "CT", phantom_dir / "MRI", "-o", taken, "--model", model)
    _one_line_error(code, err, "not a folder")


def test_two_files_with_one_name_are_ambiguous(capsys, tmp_path, model, phantom_dir):
    folders = tmp_path / "in"
    shutil.copytree(phantom_dir, folders)
    shutil.copy(folders / "CT" / "01001.png", folders / "CT" / "01001.tiff")
    code, _, err = medfuse_run(capsys, folders / "CT", folders / "MRI", "-o", tmp_path / "out", "--model", model)
    _one_line_error(code, err, "ambiguous")


def test_unwritable_output_folder_is_refused_before_the_model_loads(capsys, tmp_path, model, phantom_dir,
                                                                    monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))  # root passes chmod
    code, _, err = medfuse_run(capsys, *_pair(phantom_dir), "-o", locked / "f.png", "--model", model)
    _one_line_error(code, err, "read-only or no permission")


def test_a_failed_figure_write_takes_the_fused_image_with_it(capsys, tmp_path, model, phantom_dir, monkeypatch):
    real = io.write_png

    def refuse_figures(path, rgb):
        if Path(path).name == "s.png":
            raise OSError(28, "No space left on device")
        real(path, rgb)

    monkeypatch.setattr(io, "write_png", refuse_figures)
    out = tmp_path / "f.png"
    code, _, err = medfuse_run(capsys, *_pair(phantom_dir), "-o", out, "--model", model,
                               "--side-by-side", tmp_path / "s.png")
    assert code == 2 and "No space left" in err and "Traceback" not in err, err
    assert not out.exists() and not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_json_summary_is_strict_json_when_a_metric_is_infinite(capsys, tmp_path, model):
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.zeros((64, 64), np.uint8))
    code, stdout, err = medfuse_run(capsys, flat, flat, "-o", tmp_path / "f.png", "--model", model,
                                    "--metrics", "--json")
    assert code == 0, err

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    summary = json.loads(stdout, parse_constant=refuse)
    assert summary["outputs"][0]["metrics"]["PSNR"] is None


def test_dicom_slices_of_two_patients_or_two_positions_are_refused(capsys, tmp_path, model, phantom_dicom_dir):
    ct, mri = phantom_dicom_dir / "CT" / "01" / "01002.dcm", phantom_dicom_dir / "MRI" / "01" / "01002.dcm"
    other = pydicom.dcmread(mri)
    other.PatientID = "SOMEONE-ELSE"
    other.save_as(tmp_path / "other.dcm")
    code, _, err = medfuse_run(capsys, ct, tmp_path / "other.dcm", "-o", tmp_path / "a.png", "--model", model)
    _one_line_error(code, err, "different patients")
    code, _, err = medfuse_run(capsys, ct, phantom_dicom_dir / "MRI" / "01" / "01003.dcm", "-o", tmp_path / "b.png",
                               "--model", model)
    _one_line_error(code, err, "different slices")
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_enhanced_volumes_are_paired_and_placed_by_their_frames(capsys, tmp_path, model):
    """Two enhanced multi-frame files fuse frame by frame: frames at other positions are refused,
    and the fused NIfTI lies where the CT's frames do (stored feet first here)."""
    frame_of_reference = pydicom.uid.generate_uid()
    ct = enhanced_image(tmp_path / "ct.dcm", positions=(16.0, 13.0, 10.0), frame_of_reference=frame_of_reference)
    same = enhanced_image(tmp_path / "mr.dcm", modality="MR", positions=(16.0, 13.0, 10.0),
                          frame_of_reference=frame_of_reference)
    reversed_ = enhanced_image(tmp_path / "mr_reversed.dcm", modality="MR", positions=(10.0, 13.0, 16.0),
                               frame_of_reference=frame_of_reference)
    code, _, err = medfuse_run(capsys, ct, same, "-o", tmp_path / "fused.nii.gz", "--model", model)
    assert code == 0, err
    affine = nib.load(tmp_path / "fused.nii.gz").affine
    assert [list(affine @ [0, 0, k, 1]) for k in range(3)] == [[0, -y, 0, 1] for y in (16.0, 13.0, 10.0)]
    code, _, err = medfuse_run(capsys, ct, reversed_, "-o", tmp_path / "bad.nii.gz", "--model", model)
    _one_line_error(code, err, "different slices (16.0 and 10.0 mm")
    assert not (tmp_path / "bad.nii.gz").exists()


def test_a_series_with_several_slices_per_position_is_refused(capsys, tmp_path, model):
    """Echoes or phases stored as one enhanced file: slice-by-slice fusion would pair the wrong ones."""
    ct = enhanced_image(tmp_path / "ct.dcm", positions=(30.0, 32.0, 34.0, 36.0))
    echoes = enhanced_image(tmp_path / "echoes.dcm", modality="MR", positions=(30.0, 30.0, 33.0, 33.0))
    code, _, err = medfuse_run(capsys, ct, echoes, "-o", tmp_path / "f.nii.gz", "--model", model)
    _one_line_error(code, err, "has 4 slices at only 2 positions")
    assert "echoes.dcm" in err and not (tmp_path / "f.nii.gz").exists()


def test_volumes_no_nifti_affine_places_are_refused_before_fusing(capsys, tmp_path, model, monkeypatch):
    ct = enhanced_image(tmp_path / "ct.dcm", positions=(10.0, 16.0, 13.0))  # frames out of position order
    mri = enhanced_image(tmp_path / "mri.dcm", modality="MR", positions=(10.0, 16.0, 13.0))
    monkeypatch.setattr("medfuse.runtime.fuse.fuse_volume_images", lambda *a, **k: pytest.fail("fused first"))
    code, _, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "f.nii.gz", "--model", model)
    _one_line_error(code, err, "not evenly spaced along one direction")
    assert "ct.dcm" in err and not (tmp_path / "f.nii.gz").exists()


def test_series_number_and_description_of_dicom_outputs(capsys, tmp_path, model, phantom_dicom_dir):
    ct, mri = phantom_dicom_dir / "CT" / "01", phantom_dicom_dir / "MRI" / "01"
    code, _, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "series", "--model", model,
                               "--series-number", "7", "--series-description", "Fusion CT+MR T1")
    assert code == 0, err
    headers = [pydicom.dcmread(f) for f in sorted((tmp_path / "series").iterdir())]
    assert {(ds.SeriesNumber, ds.SeriesDescription) for ds in headers} == {(7, "Fusion CT+MR T1")}
    code, _, err = medfuse_run(capsys, ct / "01002.dcm", mri / "01002.dcm", "-o", tmp_path / "one.dcm", "--model",
                               model, "--series-description", "Fusion")
    assert code == 0 and pydicom.dcmread(tmp_path / "one.dcm").SeriesDescription == "Fusion", err
    code, _, err = medfuse_run(capsys, ct / "01002.dcm", mri / "01002.dcm", "-o", tmp_path / "one.png", "--model",
                               model, "--series-number", "7")
    _one_line_error(code, err, "label DICOM outputs")
    code, _, err = medfuse_run(capsys, ct, mri, "-o", tmp_path / "long", "--model", model,
                               "--series-description", "x" * 65)
    _one_line_error(code, err, "at most 64 characters")
    assert not (tmp_path / "one.png").exists() and not (tmp_path / "long").exists()
