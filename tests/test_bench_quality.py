"""medfuse-bench quality: data selection, baselines and engines scored on the same pairs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import bench_tiny
from medfuse.benchmarks import quality
from medfuse.benchmarks.cli import app
from medfuse.benchmarks.data import Selection, load_pairs, select
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.metrics import METRIC_NAMES, fusion_metrics


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return bench_tiny.build(tmp_path_factory.getbasetemp() / "bench-tiny")


NAMES = [f"{case:02d}{s:03d}.png" for case in (16, 20, 21, 28, 33) for s in range(1, 5)]


def test_val_split_holds_out_whole_cases_like_training():
    from medfuse.train.split import split_by_case

    val = select(NAMES, Selection(split="val", val_fraction=0.2, seed=0))
    train = select(NAMES, Selection(split="train", val_fraction=0.2, seed=0))
    assert sorted(val + train) == sorted(NAMES) and val
    assert {n[:2] for n in val}.isdisjoint({n[:2] for n in train})
    assert val == [f"{s}.png" for s in split_by_case([n[:-4] for n in NAMES], 0.2, r"^(\d{2})", 0)[1]]


def test_cases_regex_and_limit():
    assert select(NAMES, Selection(cases=r"^(28|33)")) == [n for n in NAMES if n[:2] in ("28", "33")]
    assert len(select(NAMES, Selection(limit=3))) == 3
    with pytest.raises(MedfuseError, match="--cases"):
        select(NAMES, Selection(cases="("))


def _write_colour_folder(root):
    rng = np.random.default_rng(0)
    (root / "PET").mkdir(parents=True)
    (root / "MRI").mkdir()
    for i in range(2):
        mri = rng.integers(0, 256, (40, 40), dtype=np.uint8)
        pet = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "MRI" / f"p{i}.png"), mri)
        cv2.imwrite(str(root / "PET" / f"p{i}.png"), pet)  # written BGR, read back RGB
    return root


def test_colour_functional_pairs_are_scored_on_luma(tmp_path):
    pairs = load_pairs(_write_colour_folder(tmp_path / "d"))
    assert len(pairs) == 2 and all(p.colour for p in pairs)
    rgb = pairs[0].ct.pixels.astype(np.float64)
    luma = np.round(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    np.testing.assert_array_equal(pairs[0].ref_ct, luma)
    res = quality.evaluate(pairs, baselines=("maximum",))
    expected = [fusion_metrics(np.maximum(p.ref_ct, p.ref_mri), p.ref_ct, p.ref_mri) for p in pairs]
    assert res.rows[0].mean["MI"] == pytest.approx(np.mean([e["MI"] for e in expected]))


def test_quality_command_baselines_only_on_phantoms(tmp_path):
    out = tmp_path / "q.json"
    result = CliRunner().invoke(app, ["quality", "--json", str(out), "--ssim-data-range", "2"])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(out.read_text())["quality"]}
    assert set(rows) == {"average", "maximum", "laplacian", "wavelet", "guided-filter", "maximum-of-inputs"}
    for r in rows.values():
        assert r["kind"] == "baseline" and r["pairs"] == 4 and r["ssim_data_range"] == 2
        assert all(np.isfinite(r[m]) for m in METRIC_NAMES)
    # the maximum keeps the brighter source everywhere: more contrast than the average
    assert rows["maximum"]["SD"] > rows["average"]["SD"]
    # and CT's bone as bright as in CT, where averaging with MRI greys it
    assert rows["maximum"]["CTDim"] == 0.0 and rows["average"]["CTDim"] > 10 and rows["laplacian"]["CTDim"] > 0
    assert "CTDim" in result.output
    assert "data_range 2" in result.output


def _write_ct_mri_folder(root, mri_top: int):
    """Two 64x64 8-bit pairs; the MRI tops out at mri_top except four hot pixels at 255."""
    rng = np.random.default_rng(1)
    (root / "CT").mkdir(parents=True)
    (root / "MRI").mkdir()
    for i in range(2):
        ct = np.zeros((64, 64), np.uint8)
        ct[8:56, 8:14] = 250  # a bone strip
        mri = rng.integers(0, mri_top + 1, (64, 64)).astype(np.uint8)
        mri[0, :4] = 255
        cv2.imwrite(str(root / "CT" / f"p{i}.png"), ct)
        cv2.imwrite(str(root / "MRI" / f"p{i}.png"), mri)
    return root


def test_maximum_of_inputs_follows_the_models_mri_normalisation(tmp_path):
    from medfuse.benchmarks.engines import EngineSet
    from medfuse.runtime.preprocess import PreprocessConfig, normalize_mri, prepare_pair

    folder = _write_ct_mri_folder(tmp_path / "d", mri_top=150)
    plain = PreprocessConfig(input_size=64, mri_percentile_low=0.0, mri_percentile_high=100.0)
    stretch = PreprocessConfig(input_size=64)  # default percentiles 0.5 / 99.5: the hot pixels set no scale
    pairs = load_pairs(folder, cfg=plain)
    # without a stretch (the MRI already spans 0-255) the model's inputs are the files: the plain maximum
    def maximum_of_inputs(cfg):
        return quality._maximum_of_inputs(prepare_pair(pairs[0].ct, pairs[0].mri, cfg))

    np.testing.assert_array_equal(maximum_of_inputs(plain), np.maximum(pairs[0].ref_ct, pairs[0].ref_mri))
    stretched = np.round(normalize_mri(pairs[0].ref_mri, 0.5, 99.5) * 255)
    got = maximum_of_inputs(stretch).astype(int)
    assert np.abs(got - np.maximum(pairs[0].ref_ct, stretched)).max() <= 1
    rows = {r.method: r for r in quality.evaluate(pairs, EngineSet(preprocess=stretch),
                                                  baselines=("maximum", "maximum-of-inputs")).rows}
    assert rows["maximum-of-inputs"].mean["SD"] > rows["maximum"].mean["SD"] + 5  # brighter MRI, more contrast


def test_quality_with_tiny_model_rows_and_wins(tiny, tmp_path):
    out = tmp_path / "q.json"
    result = CliRunner().invoke(app, ["quality", "-c", str(tiny.checkpoint), "-a", str(tiny.artifacts),
                                      "--baselines", "maximum,laplacian", "-e", "onnxruntime-int8",
                                      "--threads", "1", "--device", "cpu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [(r["method"], r["kind"]) for r in doc["quality"]] == [
        ("maximum", "baseline"), ("laplacian", "baseline"), ("onnxruntime-int8", "medfuse")]
    assert [(w["method"], w["versus"], w["of"]) for w in doc["wins"]] == [
        ("onnxruntime-int8", "maximum", 8), ("onnxruntime-int8", "laplacian", 8)]
    # each win of the table checked pair by pair: the mean difference is the table's
    means = {r["method"]: r for r in doc["quality"]}
    for versus in doc["paired"]:
        assert [m["metric"] for m in versus["metrics"]] == ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"]
        for m in versus["metrics"]:
            table_diff = means["onnxruntime-int8"][m["metric"]] - means[versus["versus"]][m["metric"]]
            assert m["mean"] == pytest.approx(table_diff, abs=1e-9) and m["low"] <= m["mean"] <= m["high"]
    assert "which wins hold pair by pair" in result.output


def test_a_win_holds_only_when_its_interval_clears_zero():
    from medfuse.benchmarks.paired import compare

    base = [{"Qabf": v} for v in np.linspace(0.5, 0.9, 40)]
    ahead = [{"Qabf": b["Qabf"] + 0.01} for b in base]
    coin = [{"Qabf": b["Qabf"] + (0.01 if i % 2 else -0.0099)} for i, b in enumerate(base)]  # mean +0.00005
    behind = [{"Qabf": b["Qabf"] - 0.002} for b in base]
    win, tie, loss = (compare(m, base, "Qabf") for m in (ahead, coin, behind))
    assert win["verdict"] == "win" and win["won"] == 40 and win["low"] == pytest.approx(0.01)
    assert tie["verdict"] == "tie" and tie["mean"] > 0 and tie["low"] < 0 < tie["high"] and tie["won"] == 20
    assert loss["verdict"] == "loss" and loss["won"] == 0
    with_nan = compare([*ahead[:3], {"Qabf": float("nan")}], base[:4], "Qabf")
    assert with_nan["pairs"] == 3 and with_nan["verdict"] == "win"


def test_unknown_baseline_is_a_user_error():
    result = CliRunner().invoke(app, ["quality", "--baselines", "maximum,median"])
    assert isinstance(result.exception, MedfuseError) and "median" in str(result.exception)


def test_harvard_baselines(shared_data):
    from medfuse.benchmarks.data import load_pairs as load

    pairs = load(shared_data / "harvard-ct-mri" / "train", Selection(cases=r"^21", limit=4))
    rows = {r.method: r.mean for r in quality.evaluate(pairs).rows}
    for metric in ("SD", "SCD", "VIF", "Qabf"):  # the strong, simple baseline of issue 7
        assert rows["maximum"][metric] > rows["average"][metric], metric
