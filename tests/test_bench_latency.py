"""medfuse-bench latency: interleaving, statistics, and the command on a tiny exported model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import bench_tiny
from medfuse.benchmarks import latency
from medfuse.benchmarks.cli import app
from medfuse.benchmarks.engines import Engine, EngineSet


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return bench_tiny.build(tmp_path_factory.getbasetemp() / "bench-tiny")


def _recording_engine(name: str, calls: list[str]) -> Engine:
    def run(ct, mri):
        calls.append(name)
        return np.zeros((len(ct), 3, *ct.shape[2:]), np.float32)

    return Engine(name, "fp32", "cpu", run)


def test_calls_are_interleaved_after_warmup():
    calls: list[str] = []
    engines = [_recording_engine(n, calls) for n in ("A", "B", "C")]
    ct, mri = np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 1, 8, 8), np.float32)
    samples = latency.time_interleaved(engines, ct, mri, warmup=2, iters=3)
    assert calls == ["A", "A", "B", "B", "C", "C"] + ["A", "B", "C"] * 3
    assert {k: len(v) for k, v in samples.items()} == {"A": 3, "B": 3, "C": 3}


def test_rows_speedup_throughput_and_max_batch():
    calls: list[str] = []
    ref = _recording_engine("pytorch-fp32", calls)
    capped = _recording_engine("tensorrt-fp16", calls)
    capped.max_batch = 2
    found = EngineSet(engines=[ref, capped], flops_per_image=10**9)
    ct, mri = np.zeros((3, 3, 8, 8), np.float32), np.zeros((3, 1, 8, 8), np.float32)
    rows = latency.measure(found, ct, mri, batches=(1, 4), warmup=0, iters=4)
    assert [(r.engine, r.batch) for r in rows] == [("pytorch-fp32", 1), ("tensorrt-fp16", 1), ("pytorch-fp32", 4)]
    for r in rows:
        assert r.min_ms <= r.p10_ms <= r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
        assert r.images_per_s == pytest.approx(r.batch / (r.p50_ms / 1e3))
        assert r.gflops_per_s == pytest.approx(r.batch / (r.p50_ms / 1e3))  # 1 GFLOP per image
        assert r.copies_included
    assert rows[0].speedup == 1.0
    assert rows[1].speedup == pytest.approx(rows[0].p50_ms / rows[1].p50_ms)


def test_input_batch_cycles_real_pairs():
    ct = np.arange(2, dtype=np.float32).reshape(2, 1, 1, 1) * np.ones((2, 3, 4, 4), np.float32)
    a, _ = latency.input_batch(ct, ct[:, :1], 5)
    assert a.shape == (5, 3, 4, 4) and [float(x[0, 0, 0]) for x in a] == [0, 1, 0, 1, 0]


def test_latency_command_on_tiny_model(tiny, tmp_path):
    out = tmp_path / "lat.json"
    result = CliRunner().invoke(app, ["latency", "-c", str(tiny.checkpoint), "-a", str(tiny.artifacts),
                                      "--batches", "1,2", "--iters", "2", "--warmup", "1", "--threads", "1", "--device", "cpu",
                                      "--no-overhead", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    names = {"pytorch-fp32", "pytorch-bf16", "onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8"}
    assert {(r["engine"], r["batch"]) for r in doc["latency"]} == {(n, b) for n in names for b in (1, 2)}
    assert all(r["p50_ms"] > 0 and r["gflops_per_s"] > 0 and r["iters"] == 2 for r in doc["latency"])
    assert doc["flops_per_image"] > 0
    assert any(s["name"].startswith("tensorrt") for s in doc["skipped"])  # no plan, no GPU: said, not hidden
    assert "onnxruntime-int8" in result.output


def test_overhead_rows(tiny, tmp_path):
    from medfuse.benchmarks.data import find_pairs
    from medfuse.benchmarks.overhead import measure_end_to_end, measure_prepost
    from medfuse.runtime.phantom import write_phantom_dataset
    from medfuse.runtime.preprocess import PreprocessConfig

    folder = write_phantom_dataset(tmp_path / "ph", n_cases=1, slices_per_case=2, size=64)
    files = [(a, b) for _, a, b in find_pairs(folder)]
    stages = measure_prepost(files, PreprocessConfig(input_size=64), "ct-mri", repeats=1)
    assert [s.stage.split()[0] for s in stages] == ["read", "preprocess", "postprocess"]
    assert all(s.ms_per_pair > 0 and s.pairs == 2 for s in stages)
    e2e = measure_end_to_end(files, tiny.artifacts, threads=1)
    assert len(e2e) == 2 and e2e[0].ms_per_pair > 0 and e2e[1].ms_per_pair >= e2e[0].ms_per_pair
    assert "2 of 2 pairs" in e2e[0].note and "threads 1" in e2e[0].note


def test_overhead_rows_time_the_selected_pairs_with_the_benchmark_threads(tiny, tmp_path):
    """--limit/--split and --threads hold for the pre/post and medfuse-run rows as for the engines."""
    from medfuse.benchmarks import suite
    from medfuse.benchmarks.data import Selection
    from medfuse.runtime.phantom import write_phantom_dataset

    folder = write_phantom_dataset(tmp_path / "ph", n_cases=2, slices_per_case=2, size=64)  # 4 pairs
    opts = suite.BenchOptions(artifacts=tiny.artifacts, data=folder, selection=Selection(limit=2), threads=1,
                              engines=("onnxruntime-fp32",), batches=(1,), iters=1, warmup=0)
    res = suite.run_suite(opts, ("latency",))
    assert res.data.startswith("2 pairs") and [r["pairs"] for r in res.overhead] == [2] * 5
    run_row = next(r for r in res.overhead if r["stage"].startswith("medfuse-run, fusing"))
    assert "2 of 2 pairs" in run_row["note"] and "threads 1" in run_row["note"]


def test_batches_are_deduplicated_and_checked():
    from medfuse.benchmarks.cli import _ints
    from medfuse.runtime.errors import MedfuseError

    assert _ints("1,4,1,8,4", "--batches") == (1, 4, 8)
    with pytest.raises(MedfuseError, match="positive"):
        _ints("0,2", "--batches")


@pytest.mark.gpu
def test_cuda_rows_are_timed_and_match_the_reference(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU visible to PyTorch (CUDA)")
    from medfuse.benchmarks import suite

    opts = suite.BenchOptions(checkpoint=tiny.checkpoint, device="cuda", batches=(1, 2), iters=3, warmup=1,
                              overhead=False)
    res = suite.run_suite(opts, ("latency", "parity"))
    assert {(r["engine"], r["device"]) for r in res.latency} == {("pytorch-fp32", "cuda"), ("pytorch-fp16", "cuda")}
    assert all(r["p50_ms"] > 0 and r["copies_included"] for r in res.latency)
    [row] = res.parity
    assert row["engine"] == "pytorch-fp16" and row["precision"] == "fp16" and row["passed"], row


def test_artifacts_alone_give_onnx_rows_with_flops_from_the_manifest(tiny, tmp_path):
    out = tmp_path / "lat.json"
    result = CliRunner().invoke(app, ["latency", "-a", str(tiny.artifacts), "-e", "onnxruntime-fp32", "--batches", "1",
                                      "--iters", "1", "--warmup", "0", "--threads", "1", "--device", "cpu",
                                      "--no-overhead", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    [row] = doc["latency"]
    assert row["engine"] == "onnxruntime-fp32" and row["speedup"] is None  # no PyTorch reference in this run
    assert doc["flops_per_image"] > 0 and doc["settings"]["input_size"] == bench_tiny.INPUT_SIZE
    assert any(s["name"] == "pytorch-*" and "--checkpoint" in s["reason"] for s in doc["skipped"])
