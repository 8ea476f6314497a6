"""`medfuse-inspect` on artifact folders: intact, damaged, incomplete, without a manifest, with an engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medfuse.runtime.inspect_cli import main
from medfuse.runtime.preprocess import PreprocessConfig
from onnx_fixtures import write_model_dir
from run_main import run_main

CFG = PreprocessConfig(input_size=96, ct_window_center=600.0, ct_window_width=2800.0)


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_model_dir(tmp_path / "art", precisions=("fp32", "fp16", "int8"), preprocess=CFG)


def inspect(capsys, *args) -> tuple[int, str, str]:
    # a wide console: Rich wraps table cells at the default 80 columns when not on a terminal
    return run_main(capsys, main, ["medfuse-inspect", *args], env={"COLUMNS": "240"})


def report(capsys, *args) -> tuple[int, dict]:
    code, out, err = inspect(capsys, *args, "--json")
    assert code in (0, 1), err
    return code, json.loads(out)


def set_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_intact_folder_reports_provenance_preprocessing_and_the_auto_choice(capsys, folder):
    code, data = report(capsys, folder)
    assert code == 0 and data["ok"] and data["problems"] == [] and data["notes"] == []
    assert data["modality_pair"] == "ct-mri" and data["checkpoint_sha256"] == "0" * 64
    assert data["preprocess"]["input_size"] == 96 and data["preprocess"]["ct_window_center"] == 600.0
    arts = {a["file"]: a for a in data["artifacts"]}
    assert set(arts) == {"model.onnx", "model.fp16.onnx", "model.int8.onnx"}
    assert all(a["sha256"] == "intact" and a["size_bytes"] > 0 for a in arts.values())
    assert arts["model.fp16.onnx"]["runs_here"] == "yes, slowly (fp16 on a CPU)"
    assert data["auto_choice"].startswith("onnxruntime-cpu int8 (model.int8.onnx)")


def test_human_report_names_each_artifact_and_what_runs(capsys, folder):
    code, out, _ = inspect(capsys, folder)
    assert code == 0
    assert "model.int8.onnx" in out and "intact" in out and "600/2800 HU" in out
    assert "medfuse-run --backend auto here: onnxruntime-cpu int8" in out


def test_damaged_file_is_a_problem_unless_hashing_is_skipped(capsys, folder):
    blob = bytearray((folder / "model.int8.onnx").read_bytes())
    blob[-1] ^= 0xFF
    (folder / "model.int8.onnx").write_bytes(bytes(blob))
    code, data = report(capsys, folder)
    assert code == 1 and not data["ok"]
    assert {a["file"]: a["sha256"] for a in data["artifacts"]}["model.int8.onnx"] == "differs"
    assert data["problems"] == ["model.int8.onnx differs from the sha256 recorded at export (damaged or "
                                "replaced): export it again"]
    code, data = report(capsys, folder, "--no-verify")
    assert code == 0 and {a["sha256"] for a in data["artifacts"]} == {"not checked"}


def test_listed_but_missing_file_and_failed_parity_are_problems(capsys, folder):
    (folder / "model.fp16.onnx").unlink()

    def fail_int8(manifest):
        for art in manifest["artifacts"]:
            if art["precision"] == "int8":
                art["parity"] = {"passed": False, "psnr": 31.0, "max_abs": 0.2, "inputs": "3 phantom pairs"}

    set_manifest(folder, fail_int8)
    code, data = report(capsys, folder)
    arts = {a["file"]: a for a in data["artifacts"]}
    assert code == 1
    assert arts["model.fp16.onnx"]["sha256"] == "missing" and arts["model.fp16.onnx"]["runs_here"].startswith("no")
    assert arts["model.int8.onnx"]["parity"] == {"passed": False, "psnr": 31.0, "max_abs": 0.2,
                                                 "inputs": "3 phantom pairs"}
    assert any("model.fp16.onnx is listed in manifest.json but missing" == p for p in data["problems"])
    assert any("model.int8.onnx failed its parity check" in p for p in data["problems"])
    _, out, _ = inspect(capsys, folder)
    assert "FAIL (31.0 dB, max 2.0e-01)" in out


def test_folder_without_manifest_reads_the_onnx_metadata(capsys, tmp_path):
    folder = write_model_dir(tmp_path / "bare", precisions=("fp32",), preprocess=CFG, manifest=False)
    code, data = report(capsys, folder)
    assert code == 0 and data["preprocess"]["input_size"] == 96  # from the ONNX metadata_props
    assert [(a["file"], a["sha256"]) for a in data["artifacts"]] == [("model.onnx", "not recorded")]
    assert data["notes"] == ["no manifest.json: the files cannot be checked against their export"]


def test_engine_without_tensorrt_says_why_it_cannot_run(capsys, folder):
    (folder / "model.plan").write_bytes(b"not really an engine")
    (folder / "model.plan.json").write_text(json.dumps({
        "tensorrt_version": "10.9.0", "compute_capability": [8, 9], "gpu_name": "NVIDIA L4", "precision": "fp16",
        "preprocess_config": CFG.to_dict()}))
    code, data = report(capsys, folder)
    plan = {a["file"]: a for a in data["artifacts"]}["model.plan"]
    assert code == 0 and plan["precision"] == "fp16" and plan["sha256"] == "not recorded"
    assert plan["runs_here"].startswith("no: the tensorrt package is not installed (pip install 'medfuse[gpu]')")
    assert data["engine"]["gpu_name"] == "NVIDIA L4"
    _, out, _ = inspect(capsys, folder)
    assert "TensorRT 10.9.0, built on NVIDIA L4 (compute capability 8.9)" in out
    # as medfuse-export lists an engine it built: checked like the ONNX files
    set_manifest(folder, lambda m: m["artifacts"].append({
        "file": "model.plan", "format": "tensorrt-plan", "precision": "fp16",
        "sha256": hashlib.sha256(b"not really an engine").hexdigest()}))
    code, data = report(capsys, folder)
    plan = {a["file"]: a for a in data["artifacts"]}["model.plan"]
    assert code == 0 and plan["sha256"] == "intact" and plan["format"] == "tensorrt-plan"
    assert plan["runs_here"].startswith("no: ")


def test_missing_folder_is_one_line_and_exit_2(capsys, tmp_path):
    code, out, err = inspect(capsys, tmp_path / "nowhere")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "model folder not found" in err and "Traceback" not in err


def test_unreadable_onnx_is_reported_not_fatal(capsys, folder):
    """The report read the first ONNX file's metadata with onnxruntime: a truncated file ended
    the command (exit 2, no report) instead of showing it damaged."""
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes()[:100])
    code, data = report(capsys, folder)
    arts = {a["file"]: a for a in data["artifacts"]}
    assert code == 1 and arts["model.onnx"]["sha256"] == "differs"
    assert arts["model.onnx"]["runs_here"].startswith("no: damaged")
    assert data["preprocess"]["input_size"] == 96  # from an intact file, else the manifest


def test_auto_line_says_when_its_choice_is_damaged(capsys, folder):
    with open(folder / "model.int8.onnx", "ab") as handle:
        handle.write(b"x")
    code, data = report(capsys, folder)
    assert code == 1
    assert data["auto_choice"].startswith("onnxruntime-cpu int8 (model.int8.onnx)")
    assert data["auto_choice"].endswith("but that file is damaged, so medfuse-run refuses it: export it again")


def test_odd_manifests_are_said_not_trusted(capsys, folder):
    def odd(manifest):
        manifest["artifacts"][0]["parity"] = {"passed": "false", "psnr": float("inf")}
        del manifest["artifacts"][1]["sha256"]
        manifest["artifacts"].append({"file": "../elsewhere/model.onnx", "format": "onnx", "sha256": "0"})

    set_manifest(folder, odd)
    code, out, err = inspect(capsys, folder, "--json")
    assert code == 0, err
    data = json.loads(out)  # strict JSON: the infinite PSNR is null
    assert data["artifacts"][0]["parity"] == {"passed": None, "psnr": None, "max_abs": None, "inputs": None}
    assert "../elsewhere/model.onnx" not in {a["file"] for a in data["artifacts"]}
    assert set(data["notes"]) == {
        "model.fp16.onnx has no sha256 in manifest.json: it cannot be checked",
        "model.onnx's parity verdict in manifest.json is not true or false",
        "manifest.json lists an artifact that is not a file name in the folder: '../elsewhere/model.onnx'"}
