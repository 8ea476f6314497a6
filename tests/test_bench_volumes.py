"""medfuse-bench on what `medfuse-train finetune --data` reads: NIfTI volumes, DICOM series folders,
DICOM files without a suffix. A volume pair is scored slice by slice; the validation split holds
out whole volumes, the same ones training's split holds out."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import bench_tiny
from medfuse.benchmarks import quality
from medfuse.benchmarks.cli import app
from medfuse.benchmarks.data import Selection, _reference, load_pairs
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.io import read_image
from medfuse.runtime.metrics import METRIC_NAMES
from medfuse.runtime.phantom import write_phantom_dataset
from medfuse.runtime.preprocess import PreprocessConfig, ct_to_unit, mri_to_unit
from medfuse.train.split import split_by_case

DEPTH = 3
SUB_REGEX = r"^(sub-\d+)"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return bench_tiny.build(tmp_path_factory.getbasetemp() / "bench-tiny")


def _volumes(root, fmt, n_cases=3):
    """Phantom volumes renamed as a BIDS-like export names them: CT/sub-01.nii.gz or CT/sub-01/ (series)."""
    write_phantom_dataset(root, n_cases=n_cases, slices_per_case=DEPTH, size=64, fmt=fmt)
    for folder in ("CT", "MRI"):
        for source in sorted((root / folder).iterdir()):
            source.rename(source.parent / f"sub-{source.name}")
    return root


def _names(volumes):
    return [f"{v}#{i}" for v in volumes for i in range(DEPTH)]


@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
def test_every_slice_of_every_volume_is_a_scored_pair(tmp_path, fmt):
    root = write_phantom_dataset(tmp_path / "d", n_cases=3, slices_per_case=DEPTH, size=64, fmt=fmt)
    pairs = load_pairs(root)
    assert [p.name for p in pairs] == _names(["01", "02", "03"])  # as train/data.py names slices
    assert [p.slice_index for p in pairs] == [0, 1, 2] * 3
    assert all(p.ct.height_width == (64, 64) and not p.ct.is_volume for p in pairs)
    # each slice's references are made as for that slice read alone (HU window, MRI normalisation)
    cfg = PreprocessConfig()
    for p in pairs:
        ct, mri = (read_image(f, slice_index=p.slice_index) for f in p.files)
        np.testing.assert_array_equal(p.ref_ct, _reference(ct, ct_to_unit, cfg))
        np.testing.assert_array_equal(p.ref_mri, _reference(mri, mri_to_unit, cfg))
    assert len({p.ref_ct.tobytes() for p in pairs}) == len(pairs)  # distinct slices, not one repeated
    res = quality.evaluate(pairs, baselines=("maximum", "maximum-of-inputs"), keep_examples=2)
    for row in res.rows:
        assert row.pairs == 9 and all(np.isfinite(row.mean[m]) for m in METRIC_NAMES)
    assert list(res.examples) == ["01#0", "01#1"]


@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_val_split_holds_out_the_volumes_training_holds_out(tmp_path, fmt, seed):
    from medfuse.train.data import find_pairs as train_pairs

    root = _volumes(tmp_path / "d", fmt, n_cases=5)
    volumes = [p.name for p in train_pairs(root, "finetune")[0]]  # what setup.load_data splits
    assert volumes == [f"sub-0{c}" for c in range(1, 6)]
    train, val = split_by_case(volumes, 0.4, SUB_REGEX, seed)
    held = load_pairs(root, Selection(split="val", val_fraction=0.4, seed=seed, case_regex=SUB_REGEX))
    kept = load_pairs(root, Selection(split="train", val_fraction=0.4, seed=seed, case_regex=SUB_REGEX))
    assert [p.name for p in held] == _names(val) and [p.name for p in kept] == _names(train)
    assert {p.files for p in held}.isdisjoint({p.files for p in kept})  # no volume on both sides


def test_cases_and_limit_pick_volumes_then_spread_over_slices(tmp_path):
    root = _volumes(tmp_path / "d", "nifti")
    pairs = load_pairs(root, Selection(cases=r"^sub-0[13]"))
    assert [p.name for p in pairs] == _names(["sub-01", "sub-03"])
    pairs = load_pairs(root, Selection(cases=r"^sub-0[13]", limit=4))
    assert [p.name for p in pairs] == ["sub-01#0", "sub-01#2", "sub-03#0", "sub-03#2"]
    with pytest.raises(MedfuseError, match="does not match --case-regex"):  # a case key is read from the volume name
        load_pairs(root, Selection(split="val"))


def test_uid_named_dicom_files_and_series_beside_2d_files(tmp_path):
    """PACS exports: DICOM files named by UID without a suffix are 2D pairs; series folders volumes."""
    root = write_phantom_dataset(tmp_path / "png", n_cases=1, slices_per_case=2, size=64)
    series = write_phantom_dataset(tmp_path / "s", n_cases=1, slices_per_case=DEPTH, size=64, fmt="dicom")
    uid = "1.2.826.0.1.3680043.8.498.11"
    for folder in ("CT", "MRI"):
        shutil.copy(sorted((series / folder / "01").glob("*.dcm"))[0], root / folder / uid)
        shutil.copytree(series / folder / "01", root / folder / "1.2.826.0.1.3680043.8.498.12")
    names = [p.name for p in load_pairs(root)]
    assert names == ["01001", "01002", uid, *(f"1.2.826.0.1.3680043.8.498.12#{i}" for i in range(DEPTH))]


def test_names_that_do_not_match_are_said_plainly(tmp_path):
    root = _volumes(tmp_path / "d", "nifti", n_cases=1)
    (root / "MRI" / "sub-01.nii.gz").rename(root / "MRI" / "01.nii.gz")
    with pytest.raises(MedfuseError, match=r"no file or series folder name \(suffix aside\) is in both CT/ and "
                                           r"MRI/ \(CT/ has sub-01; MRI/ has 01\)"):
        load_pairs(root)


def test_quality_command_on_held_out_volumes(tmp_path, tiny):
    root = _volumes(tmp_path / "d", "dicom")
    out = tmp_path / "q.json"
    result = CliRunner().invoke(app, [
        "quality", "--data", str(root), "--split", "val", "--case-regex", SUB_REGEX, "-c", str(tiny.checkpoint),
        "-a", str(tiny.artifacts), "-e", "onnxruntime-fp32", "--device", "cpu", "--threads", "1",
        "--baselines", "maximum,maximum-of-inputs", "--json", str(out)])
    assert result.exit_code == 0, result.output
    _, val = split_by_case(["sub-01", "sub-02", "sub-03"], 0.2, SUB_REGEX, 0)
    assert f"{len(val) * DEPTH} pairs from" in result.output and "slices of 1 volume pair" in result.output
    rows = {r["method"]: r for r in json.loads(out.read_text())["quality"]}
    assert set(rows) == {"maximum", "maximum-of-inputs", "onnxruntime-fp32"}
    for row in rows.values():
        assert row["pairs"] == len(val) * DEPTH and all(np.isfinite(row[m]) for m in METRIC_NAMES)


def test_report_on_volumes_says_why_it_has_no_overhead_rows(tmp_path, tiny):
    """The pre/postprocessing and medfuse-run rows time 2D pair files; on volumes they are skipped
    with the reason, and the rest of the report is written (they crashed on a volume's slices)."""
    root = _volumes(tmp_path / "d", "nifti", n_cases=2)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "-o", str(out), "-c", str(tiny.checkpoint), "-a", str(tiny.artifacts),
                                      "--data", str(root), "--batches", "1", "--iters", "1", "--warmup", "0",
                                      "--threads", "1", "--device", "cpu", "--pairs", "1", "--examples", "1",
                                      "-e", "onnxruntime-fp32", "-e", "pytorch-fp32"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["overhead"] == [] and any("the data holds volumes" in s["reason"] for s in doc["skipped"])
    assert {r["pairs"] for r in doc["quality"]} == {2 * DEPTH}


def test_limit_keeps_only_its_slices_not_their_volumes(tmp_path):
    """--limit on a large collection: the kept slices are copies, so no whole volume stays in memory
    behind them (views kept every selected volume alive)."""
    root = _volumes(tmp_path / "d", "nifti", n_cases=3)
    pairs = load_pairs(root, Selection(limit=2))
    assert len(pairs) == 2 and {p.slice_index for p in pairs} <= set(range(DEPTH))
    assert all(img.pixels.flags.owndata and img.pixels.ndim == 2 for p in pairs for img in (p.ct, p.mri))


def test_without_limit_each_volume_is_read_once(tmp_path, monkeypatch):
    from medfuse.runtime import pairing

    root = _volumes(tmp_path / "d", "nifti", n_cases=2)
    reads = []
    real = pairing.read_slices
    monkeypatch.setattr(pairing, "read_slices", lambda *a, **k: reads.append(a[0].name) or real(*a, **k))
    assert len(load_pairs(root)) == 2 * DEPTH
    assert sorted(reads) == ["sub-01.nii.gz", "sub-02.nii.gz"]  # once to learn its depth, kept for scoring
