"""medfuse-bench parity: tolerances per precision, the release gate's exit status."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import bench_tiny
from medfuse.benchmarks import parity, suite
from medfuse.benchmarks.cli import EXIT_PARITY_FAILED, app
from medfuse.benchmarks.engines import Engine


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return bench_tiny.build(tmp_path_factory.getbasetemp() / "bench-tiny")


@pytest.fixture
def stack():
    rng = np.random.default_rng(0)
    ref = rng.random((2, 3, 16, 16)).astype(np.float32)
    ct = rng.random((2, 3, 16, 16)).astype(np.float32)
    return ref, ct, ct[:, :1].copy()


def test_bf16_has_its_own_tolerance(stack):
    ref, ct, mri = stack
    cand = ref.copy()
    cand[0, 0, 0, :4] += 0.05  # a few pixels too far for fp16 (max 2e-2), within bf16's 0.1
    res = parity.judge(ref, cand, "bf16", ct, mri)
    assert res.passed and res.precision == "bf16" and res.tolerance.max_abs == 0.1
    assert not parity.judge(ref, cand, "fp16", ct, mri).passed
    assert res.max_abs == pytest.approx(0.05, abs=1e-6)


def test_nan_fails_and_is_counted(stack):
    ref, ct, mri = stack
    cand = ref.copy()
    cand[0, 0, 0, :3] = np.nan
    res = parity.judge(ref, cand, "int8", ct, mri)
    assert res.nonfinite == 3 and not res.passed


def test_parity_command_passes_on_tiny_model(tiny, tmp_path):
    out = tmp_path / "parity.json"
    result = CliRunner().invoke(app, ["parity", "-c", str(tiny.checkpoint), "-a", str(tiny.artifacts),
                                      "--pairs", "2", "--threads", "1", "--device", "cpu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["engine"]: r for r in json.loads(out.read_text())["parity"]}
    assert set(rows) == {"pytorch-bf16", "onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8"}
    assert rows["onnxruntime-fp32"]["max_abs"] < 1e-4 and rows["onnxruntime-fp32"]["tol_max_abs"] == 1e-4
    assert rows["onnxruntime-int8"]["tol_max_abs"] == 0.25
    assert all(r["passed"] and r["nonfinite"] == 0 and r["samples"] == 2 for r in rows.values())
    assert all("delta_MI" in r and "delta_SSIM" in r for r in rows.values())


def test_parity_command_exits_nonzero_when_a_row_fails(tiny, monkeypatch):
    real = suite.discover

    def with_broken_engine(*args, **kwargs):
        found = real(*args, **kwargs)
        ref = found.get("pytorch-fp32")
        found.engines.append(Engine("broken-fp32", "fp32", "cpu", lambda ct, mri: ref.run(ct, mri) + 0.01))
        return found

    monkeypatch.setattr(suite, "discover", with_broken_engine)
    result = CliRunner().invoke(app, ["parity", "-c", str(tiny.checkpoint), "--pairs", "1", "--threads", "1", "--device", "cpu"])
    assert result.exit_code == EXIT_PARITY_FAILED
    assert "FAIL" in result.output and "broken-fp32" in result.output


def test_parity_without_reference_is_a_user_error(tiny):
    from medfuse.runtime.errors import MedfuseError

    with pytest.raises(MedfuseError, match="--checkpoint"):
        suite.run_suite(suite.BenchOptions(artifacts=tiny.artifacts, threads=1, device="cpu"), ("parity",))
