"""The parity comparator: figures, per-precision tolerances, NaN/Inf, the one-sentence failure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfuse.export.parity import TOLERANCES, compare, require
from medfuse.runtime.errors import MedfuseError


def _images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((2, 3, 32, 32), dtype=np.float32)


def test_identical_outputs_pass_with_infinite_psnr():
    ref = _images()
    result = compare(ref, ref.copy(), "fp32")
    assert result.passed and result.max_abs == 0 and math.isinf(result.psnr)
    assert result.to_dict()["psnr"] is None  # JSON-safe


def test_known_error_gives_known_figures():
    ref = _images()
    result = compare(ref, ref + 0.01, "fp16")
    assert result.max_abs == pytest.approx(0.01, rel=1e-3)
    assert result.mean_abs == pytest.approx(0.01, rel=1e-3)
    assert result.psnr == pytest.approx(40.0, abs=0.01)  # 10 log10(1 / 1e-4)
    assert not result.passed  # 40 dB is under the fp16 floor
    assert compare(ref, ref + 0.01, "int8").passed


def test_nan_and_inf_fail_whatever_the_error():
    ref = _images()
    cand = ref.copy()
    cand[0, 0, 0, 0], cand[1, 2, 3, 4] = np.nan, np.inf
    result = compare(ref, cand, "int8")
    assert result.nonfinite == 2 and not result.passed


def test_tolerances_tighten_with_precision():
    fp32, fp16, int8 = (TOLERANCES[p] for p in ("fp32", "fp16", "int8"))
    assert fp32.max_abs < fp16.max_abs < int8.max_abs
    assert fp32.min_psnr > fp16.min_psnr > int8.min_psnr


def test_require_raises_one_sentence_naming_the_artifact():
    ref = _images()
    with pytest.raises(MedfuseError) as err:
        require(compare(ref, ref + 0.5, "int8"), "model.int8.onnx")
    text = str(err.value)
    assert text.startswith("model.int8.onnx: int8 output differs from PyTorch") and "\n" not in text
    assert require(compare(ref, ref, "fp32"), "model.onnx").passed


def test_metric_change_reported_when_sources_given():
    pytest.importorskip("medfuse.runtime.metrics", reason="fusion metrics module not present")
    rng = np.random.default_rng(1)
    ct, mri = rng.random((2, 3, 32, 32), dtype=np.float32), rng.random((2, 1, 32, 32), dtype=np.float32)
    ref = _images()
    same = compare(ref, ref.copy(), "fp32", ct=ct, mri=mri)
    assert same.metric_delta and all(v == 0 for v in same.metric_delta.values())
    changed = compare(ref, np.clip(ref * 0.5, 0, 1), "int8", ct=ct, mri=mri)
    assert changed.metric_delta["SD"] < 0  # halving the image halves its contrast


def test_half_precision_reference_run_is_silent_where_sigmoid_saturates(tmp_path):
    """The ONNX reference evaluator's fp16 Sigmoid overflows in the branch it discards; that must
    not reach the user as numpy warnings, and the saturated values must be right."""
    import warnings

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from medfuse.export.runners import reference_outputs

    nodes = [
        helper.make_node("Add", ["ct", "mri"], ["sum"]),
        helper.make_node("Cast", ["sum"], ["half"], to=TensorProto.FLOAT16),
        helper.make_node("Sigmoid", ["half"], ["gate"]),
        helper.make_node("Cast", ["gate"], ["fused"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(nodes, "g", [
        helper.make_tensor_value_info("ct", TensorProto.FLOAT, [1, 3, 2, 2]),
        helper.make_tensor_value_info("mri", TensorProto.FLOAT, [1, 1, 2, 2]),
    ], [helper.make_tensor_value_info("fused", TensorProto.FLOAT, [1, 3, 2, 2])])
    path = tmp_path / "sigmoid.fp16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    ct = np.full((1, 3, 2, 2), 30000.0, np.float32)
    ct[0, :, 0, 0] = -30000.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = reference_outputs(path, ct, np.zeros((1, 1, 2, 2), np.float32))
    assert np.isfinite(out).all() and out[0, 0, 0, 0] == 0.0 and out[0, 0, 1, 1] == 1.0
