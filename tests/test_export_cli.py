"""`medfuse-export` end to end on a tiny checkpoint, and its bad-input contract: one line, exit 2,
no traceback, nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from export_support import make_tiny_checkpoint
from medfuse.runtime.checksum import sha256_file
from medfuse.export.tensorrt_build import engine_unavailable


def _cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MEDFUSE_DEBUG"}
    return subprocess.run([sys.executable, "-m", "medfuse.export.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def export_run(tmp_path_factory, checkpoint, phantom_dir):
    root = tmp_path_factory.mktemp("export")
    done = _cli(checkpoint, "-o", root / "artifacts", "--fp16", "--int8", "--calib", phantom_dir,
                "--calib-pairs", "4", "--parity-pairs", "2", "--triton-repo", root / "triton", "--batch", "1,2,8")
    return done, root


def test_export_writes_every_artifact(export_run):
    done, root = export_run
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (root / "artifacts").iterdir())
    assert names == ["manifest.json", "model.fp16.onnx", "model.int8.onnx", "model.onnx"]  # no staging left
    for name in names[1:]:
        onnx.checker.check_model(str(root / "artifacts" / name), full_check=True)
    assert "model.int8.onnx" in done.stdout  # the final table


def test_manifest_lists_artifacts_with_checksums_and_parity(export_run, checkpoint):
    _, root = export_run
    manifest = json.loads((root / "artifacts" / "manifest.json").read_text())
    assert manifest["checkpoint_sha256"] == sha256_file(checkpoint)
    assert manifest["modality_pair"] == "ct-mri" and manifest["medfuse_version"]
    assert manifest["preprocess_config"]["input_size"] == 64 and manifest["model_config"]["width"] == 8
    arts = {a["file"]: a for a in manifest["artifacts"]}
    assert {a["precision"] for a in arts.values()} == {"fp32", "fp16", "int8"}
    for name, art in arts.items():
        assert art["format"] == "onnx" and art["sha256"] == sha256_file(root / "artifacts" / name)
        parity = art["parity"]
        assert parity["passed"] and parity["nonfinite"] == 0 and parity["samples"] == 5  # 3 phantoms + 2 real
        assert "2 real pairs" in parity["inputs"]
        assert set(parity["metric_delta"]) >= {"EN", "SSIM", "Qabf"}
    half = arts["model.fp16.onnx"]["parity"]["half_arithmetic"]  # true fp16 maths, not ORT's fp32 casts
    assert half["passed"] and half["max_abs"] > 0


def test_no_gpu_says_so_in_one_line(export_run):
    done, root = export_run
    if engine_unavailable() is None:
        pytest.skip("this machine can build engines")
    lines = [line for line in done.stderr.splitlines() if "engine not built" in line]
    assert len(lines) == 1 and "NVIDIA GPU" in lines[0] and "tensorrt" in lines[0]
    assert not (root / "artifacts" / "model.plan").exists()


def test_triton_repository_from_the_export(export_run):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    _, root = export_run
    repo = root / "triton"
    assert (repo / "medfuse_onnx" / "1" / "model.onnx").read_bytes() == (root / "artifacts" / "model.onnx").read_bytes()
    cfg = text_format.Parse((repo / "medfuse_onnx" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cfg.max_batch_size == 8 and list(cfg.input[0].dims) == [3, 64, 64]
    assert not (repo / "medfuse_trt").exists() or engine_unavailable() is None


def _assert_user_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_checkpoint(tmp_path):
    done = _cli(tmp_path / "nope.pt", "-o", tmp_path / "out")
    _assert_user_error(done, "nope.pt", "checkpoint not found")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, fragment", [
    (b"PK\x03\x04 truncated zip", "cannot read checkpoint"),
    (None, "not a medfuse checkpoint"),
])
def test_corrupt_or_foreign_checkpoint_writes_nothing(tmp_path, content, fragment):
    bad = tmp_path / "bad.pt"
    if content is None:
        import torch

        torch.save({"state_dict": {}}, bad)  # a torch file, but not ours
    else:
        bad.write_bytes(content)
    out = tmp_path / "out"
    _assert_user_error(_cli(bad, "-o", out), "bad.pt", fragment)
    assert not out.exists()


def test_existing_output_folder_is_left_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    _assert_user_error(_cli(bad, "-o", out))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_unwritable_output_folder(tmp_path, checkpoint):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should go")
    _assert_user_error(_cli(checkpoint, "-o", blocker / "sub"), "cannot write to the output folder")
    _assert_user_error(_cli(checkpoint, "-o", blocker), "not a folder")


def test_calibration_folder_without_pairs(tmp_path, checkpoint):
    empty = tmp_path / "calib"
    (empty / "CT").mkdir(parents=True)
    (empty / "MRI").mkdir()
    (empty / "CT" / "01001.png").write_bytes(b"x")  # no MRI partner
    _assert_user_error(_cli(checkpoint, "-o", tmp_path / "out", "--int8", "--calib", empty), "no pairs: no file or series folder name (suffix aside) is in both CT/ and MRI/")
    _assert_user_error(_cli(checkpoint, "-o", tmp_path / "out", "--int8", "--calib", tmp_path / "none"), "does not exist")
    _assert_user_error(_cli(checkpoint, "-o", tmp_path / "out", "--int8"), "--int8 needs --calib")
    assert not (tmp_path / "out").exists()


def test_calibration_folder_of_dicom_series_is_read_as_training_reads_it(tmp_path, checkpoint, phantom_dicom_dir):
    # CT/01/01001.dcm...: series subfolders (they were refused); each series gives its middle slice
    done = _cli(checkpoint, "-o", tmp_path / "out", "--int8", "--calib", phantom_dicom_dir)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "model.int8.onnx").is_file()


def test_old_opset_is_refused_before_the_checkpoint_loads(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")  # loading it would be another error
    _assert_user_error(_cli(bad, "-o", tmp_path / "out", "--opset", "17"), "--opset must be 18 or newer")


def test_engine_require_without_gpu(tmp_path, checkpoint):
    if engine_unavailable() is None:
        pytest.skip("this machine can build engines")
    _assert_user_error(_cli(checkpoint, "-o", tmp_path / "out", "--engine", "require"), "--engine require", "NVIDIA GPU")
    assert not (tmp_path / "out").exists()


def test_bad_batch_option(tmp_path, checkpoint):
    _assert_user_error(_cli(checkpoint, "-o", tmp_path / "out", "--batch", "32,4,1"), "--batch")


def test_pairs_match_by_name_whatever_the_suffix(tmp_path):
    from medfuse.export.pairs import find_pairs, split_pairs

    for sub, names in {"CT": ["01001.dcm", "01002.png", "02001.nii.gz", "notes.txt"],
                       "mri": ["01001.png", "01002.png", "02001.nii.gz", "03001.png"]}.items():
        (tmp_path / sub).mkdir()
        for name in names:
            (tmp_path / sub / name).write_bytes(b"")
    (tmp_path / "CT" / "04").mkdir()  # a DICOM series folder, as training reads it
    (tmp_path / "mri" / "04").mkdir()
    found = [(c.name, m.name) for c, m in find_pairs(tmp_path)]
    assert found == [("01001.dcm", "01001.png"), ("01002.png", "01002.png"), ("02001.nii.gz", "02001.nii.gz"),
                     ("04", "04")]
    calib, check = split_pairs(list(range(10)), calibration=4, parity=3)
    assert len(calib) == 4 and len(check) == 3 and not set(calib) & set(check)


def test_calibration_pairs_from_dicom_series_folders(tmp_path):
    """A training folder of DICOM series can calibrate int8: each series gives its middle slice,
    prepared as the runtime prepares it (series subfolders were not read before)."""
    import numpy as np

    from medfuse.export.pairs import find_pairs, load_arrays
    from medfuse.runtime.io import read_image
    from medfuse.runtime.phantom import write_phantom_dataset
    from medfuse.runtime.preprocess import PreprocessConfig, prepare_pair

    root = write_phantom_dataset(tmp_path / "d", n_cases=2, slices_per_case=3, size=32, fmt="dicom")
    found = find_pairs(root)
    assert [c.name for c, _ in found] == ["01", "02"] and all(c.is_dir() for c, _ in found)
    cfg = PreprocessConfig(input_size=32)
    ct, mri = load_arrays(found, cfg)
    expected = prepare_pair(read_image(found[1][0], slice_index=1), read_image(found[1][1], slice_index=1), cfg)
    assert ct.shape == (2, 3, 32, 32) and np.array_equal(ct[1], expected.ct) and np.array_equal(mri[1], expected.mri)


def test_calibration_pairs_of_another_modality_are_refused(tmp_path, checkpoint, phantom_dir):
    """A CT-MRI model calibrated on a PET/ folder (or the reverse) passed, and its int8 parity was
    judged on pairs it will never see."""
    pet = tmp_path / "pet"
    shutil.copytree(phantom_dir, pet)
    (pet / "CT").rename(pet / "PET")
    done = _cli(checkpoint, "-o", tmp_path / "out", "--int8", "--calib", pet)
    _assert_user_error(done, "holds pet-mri pairs, but the model fuses ct-mri")
    assert not (tmp_path / "out").exists()
