"""medfuse-bench report: the files' content, not only their existence."""

from __future__ import annotations

import json
import sys

import cv2
import pytest
from typer.testing import CliRunner

import bench_tiny
from medfuse.benchmarks.cli import app, main

ENGINES = ("pytorch-fp32", "pytorch-bf16", "onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8")
BASELINES = ("average", "maximum", "laplacian", "wavelet", "guided-filter", "maximum-of-inputs")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return bench_tiny.build(tmp_path_factory.getbasetemp() / "bench-tiny")


@pytest.fixture(scope="module")
def report_dir(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(app, ["report", "-o", str(out), "-c", str(tiny.checkpoint), "-a", str(tiny.artifacts),
                                      "--batches", "1,2", "--iters", "2", "--warmup", "0", "--threads", "1", "--device", "cpu",
                                      "--pairs", "2", "--examples", "2"])
    assert result.exit_code == 0, result.output
    return out


def test_results_json_has_one_named_record_per_row(report_dir):
    doc = json.loads((report_dir / "results.json").read_text())
    assert doc["schema"] == "medfuse-bench-report/1"
    assert doc["machine"]["torch"] and doc["machine"]["onnxruntime"] and doc["machine"]["physical_cores"] >= 1
    assert {(r["engine"], r["batch"]) for r in doc["latency"]} == {(e, b) for e in ENGINES for b in (1, 2)}
    assert {r["engine"] for r in doc["parity"]} == set(ENGINES) - {"pytorch-fp32"}
    assert [r["method"] for r in doc["quality"]] == [*BASELINES, *ENGINES]
    assert all(r["passed"] for r in doc["parity"])
    assert doc["settings"]["ssim_data_range"] == 255 and doc["settings"]["threads"] == 1
    assert {"p50_ms", "p90_ms", "p99_ms", "images_per_s", "gflops_per_s", "speedup"} <= set(doc["latency"][0])
    assert [r["stage"].split()[0] for r in doc["overhead"]][:3] == ["read", "preprocess", "postprocess"]
    assert any(r["stage"].startswith("medfuse-run") for r in doc["overhead"])


def test_report_md_tables(report_dir, tiny):
    md = (report_dir / "report.md").read_text()
    for heading in ("## Machine and versions", "## Latency", "## Parity against PyTorch fp32", "## Fusion quality"):
        assert heading in md
    for name in ENGINES:
        assert f"| {name} | cpu | 1 |" in md  # a latency row per engine and batch
    for name in BASELINES:
        assert f"| {name} | baseline | 4 |" in md
    assert "| onnxruntime-int8 | int8 |" in md and "| pass |" in md
    assert "data_range = 255" in md  # the SSIM choice is visible
    quality_header = next(line for line in md.splitlines() if line.startswith("| method | kind | pairs |"))
    assert quality_header.endswith("| PSNR | CTDim |")  # CT-MRI pairs: how much each method darkens bone
    assert "tensorrt" in md and "skipped" in md  # says what did not run here, and why
    assert "![grid](grid.png)" in md
    assert "## Model" in md and f"checkpoint `{tiny.checkpoint}`" in md  # which model the figures are of
    assert f"artifacts `{tiny.artifacts}`, exported from checkpoint sha256" in md
    assert "| onnxruntime-int8 | int8 | 2 |" in md  # parity says how many pairs it compared
    assert "## Which wins hold pair by pair" in md and "| wins that hold | ties | losses |" in md


@pytest.mark.parametrize("name, min_w, min_h", [("latency.png", 400, 250), ("quality.png", 800, 300),
                                                 ("grid.png", 900, 250)])
def test_pngs_decode_with_sensible_size(report_dir, name, min_w, min_h):
    img = cv2.imread(str(report_dir / name))
    assert img is not None, name
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h and img.std() > 5  # not blank


def test_grid_has_a_column_per_source_baseline_and_engine(report_dir):
    img = cv2.imread(str(report_dir / "grid.png"))
    h, w = img.shape[:2]
    columns, rows = 2 + len(BASELINES) + len(ENGINES), 2
    assert w / h == pytest.approx(columns * 2.2 / (rows * 2.3), rel=0.25)


def test_bad_data_folder_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["medfuse-bench", "quality", "--data", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing" in err and "\n" not in err


def test_report_without_a_model_scores_the_baselines_and_says_what_is_missing(tmp_path):
    result = CliRunner().invoke(app, ["report", "-o", str(tmp_path), "--examples", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in doc["quality"]] == list(BASELINES) and doc["latency"] == [] and doc["parity"] == []
    assert {s["name"] for s in doc["skipped"]} >= {"pytorch-*", "parity"}
    assert not (tmp_path / "latency.png").exists() and cv2.imread(str(tmp_path / "grid.png")) is not None


def _bench(capsys, monkeypatch, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["medfuse-bench", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err.strip()


def test_report_into_a_file_is_refused_before_any_model_loads(tmp_path, monkeypatch, capsys):
    garbage = tmp_path / "not-a-checkpoint.pt"
    garbage.write_bytes(b"not a checkpoint")  # loading it would fail with another message
    (tmp_path / "taken").write_text("")
    code, err = _bench(capsys, monkeypatch, "report", "-o", tmp_path / "taken" / "sub", "-c", garbage)
    assert code == 2 and "not a folder" in err and "taken" in err and "\n" not in err


@pytest.mark.parametrize("args, needle", [
    (["quality", "--split", "val"], "without --data"),
    (["quality", "--limit", "1"], "without --data"),
    (["quality", "--device", "gpu"], "--device must be"),
    (["latency", "--split", "bogus", "--data", "."], "unknown --split"),
])
def test_selection_and_device_errors_before_work(tmp_path, monkeypatch, capsys, args, needle):
    code, err = _bench(capsys, monkeypatch, *args)
    assert code == 2 and needle in err and "\n" not in err


@pytest.mark.parametrize("args, needle", [
    (["quality", "--baselines", "maximum,wavelet"], "PyWavelets: pip install 'medfuse[bench]', or leave it out: "
                                                   "--baselines maximum"),
    (["report", "-o", "r"], "matplotlib"),
])
def test_missing_bench_extras_are_named_before_any_work(tmp_path, monkeypatch, capsys, args, needle):
    import medfuse.entry_points

    monkeypatch.setattr(medfuse.entry_points, "missing_modules", lambda names: list(names))  # nothing installed
    monkeypatch.chdir(tmp_path)
    code, err = _bench(capsys, monkeypatch, *args)
    assert code == 2 and needle in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_console_tables_print_brackets_as_they_are():
    """Rich read the 'medfuse[gpu]' of a skip reason as markup and printed 'medfuse'."""
    from rich.console import Console

    from medfuse.benchmarks.tables import rich_table

    console = Console(record=True, width=200)
    console.print(rich_table((["engine", "reason"], [["tensorrt", "pip install 'medfuse[gpu]'"]]), "skipped"))
    assert "pip install 'medfuse[gpu]'" in console.export_text()
