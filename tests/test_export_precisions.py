"""fp16 and int8 ONNX variants: fp32 I/O, reduced-precision insides, parity within their tolerances."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export_support import random_pair, tiny_export
from medfuse.export import metadata as meta
from medfuse.export import pairs
from medfuse.export.fp16 import FP32_OPS, convert_fp16
from medfuse.export.int8 import quantize_int8
from medfuse.export.onnx_export import save_checked
from medfuse.export.parity import compare
from medfuse.export.runners import onnx_outputs, ort_session, torch_outputs

F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module")
def variants(tmp_path_factory, phantom_dir):
    tiny = tiny_export(tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp("variants")
    model, pre_cfg, base, fp32 = tiny["model"], tiny["pre_cfg"], tiny["metadata"], tiny["path"]
    fp16 = save_checked(convert_fp16(onnx.load(str(fp32))), folder / "model.fp16.onnx", meta.with_precision(base, "fp16"))
    calib_ct, calib_mri = pairs.load_arrays(pairs.find_pairs(phantom_dir), pre_cfg)
    int8 = save_checked(quantize_int8(fp32, calib_ct, calib_mri), folder / "model.int8.onnx", meta.with_precision(base, "int8"))
    ct, mri = pairs.phantom_arrays(pre_cfg)
    return {"model": model, "fp32": fp32, "fp16": fp16, "int8": int8, "ct": ct, "mri": mri,
            "reference": torch_outputs(model, ct, mri)}


def _io_types(model: onnx.ModelProto) -> set[int]:
    return {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}


def test_fp16_file_has_fp32_io_and_fp16_weights(variants):
    model = onnx.load(str(variants["fp16"]))
    assert _io_types(model) == {F32}
    weights = Counter(t.data_type for t in model.graph.initializer if len(t.dims) == 4)  # conv kernels
    assert weights[F16] > 0 and weights[F32] == 0
    assert meta.read_metadata(variants["fp16"])[meta.PRECISION] == "fp16"


def test_fp16_keeps_reductions_in_fp32(variants):
    model = onnx.shape_inference.infer_shapes(onnx.load(str(variants["fp16"])))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]}
    kept = [n for n in model.graph.node if n.op_type in FP32_OPS]
    assert kept, "the tiny model has channel-attention ReduceMean nodes"
    assert all(types.get(n.input[0]) == F32 for n in kept)


def test_fp16_parity_in_onnx_runtime(variants):
    out = onnx_outputs(variants["fp16"], variants["ct"], variants["mri"])
    result = compare(variants["reference"], out, "fp16", ct=variants["ct"], mri=variants["mri"])
    assert result.passed and result.nonfinite == 0, result.summary()


def test_fp16_parity_with_true_half_arithmetic(variants):
    # ONNX Runtime's CPU provider computes most fp16 nodes in fp32 (it casts around them), so the
    # ONNX reference evaluator, which computes in each tensor's declared type, checks the half maths.
    from onnx.reference import ReferenceEvaluator

    ct, mri = variants["ct"][:1], variants["mri"][:1]
    out = ReferenceEvaluator(str(variants["fp16"])).run(["fused"], {"ct": ct, "mri": mri})[0]
    result = compare(variants["reference"][:1], out.astype(np.float32), "fp16")
    assert result.passed, result.summary()
    assert result.max_abs > 0  # genuinely half precision, not fp32 in disguise


def test_int8_file_is_qdq_with_per_channel_weights(variants):
    model = onnx.load(str(variants["int8"]))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert _io_types(model) == {F32}
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        scale, zero = inits[dq.input[1]], inits[dq.input[2]]
        assert zero.data_type == onnx.TensorProto.INT8  # signed int8 weights
        assert numpy_helper.to_array(scale).size == inits[dq.input[0]].dims[0]  # one scale per output channel
    act_zero_types = {inits[n.input[2]].data_type for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert act_zero_types == {onnx.TensorProto.UINT8}  # uint8 activations
    assert meta.read_metadata(variants["int8"])[meta.PRECISION] == "int8"


def test_int8_parity_and_batches(variants):
    out = onnx_outputs(variants["int8"], variants["ct"], variants["mri"])
    result = compare(variants["reference"], out, "int8", ct=variants["ct"], mri=variants["mri"])
    assert result.passed and result.max_abs > 0, result.summary()
    ct, mri = random_pair(3)
    assert ort_session(variants["int8"]).run(["fused"], {"ct": ct, "mri": mri})[0].shape == (3, 3, 64, 64)


def test_quantizer_leaves_nothing_in_the_working_folder(variants, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    ct, mri = variants["ct"][:1], variants["mri"][:1]
    quantize_int8(variants["fp32"], ct, mri)
    assert list(tmp_path.iterdir()) == []


def test_quantizer_takes_a_path_relative_to_the_working_folder(variants, monkeypatch, tmp_path):
    # The quantizer works inside a scratch folder; a relative input path must still be found.
    (tmp_path / "model.onnx").write_bytes(variants["fp32"].read_bytes())
    monkeypatch.chdir(tmp_path)
    quantized = quantize_int8("model.onnx", variants["ct"][:1], variants["mri"][:1])
    assert any(node.op_type == "QuantizeLinear" for node in quantized.graph.node)


def test_duplicate_identical_casts_are_merged():
    # Some onnxruntime releases emit one identically named Cast per blocked consumer.
    from onnx import helper

    from medfuse.export.fp16 import drop_duplicate_casts

    cast = lambda: helper.make_node("Cast", ["x"], ["x_cast_to_fp32"], to=onnx.TensorProto.FLOAT)  # noqa: E731
    graph = helper.make_graph(
        [cast(), helper.make_node("Relu", ["x_cast_to_fp32"], ["a"]), cast(),
         helper.make_node("Neg", ["x_cast_to_fp32"], ["b"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT16, [2])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [2]) for n in ("a", "b")])
    drop_duplicate_casts(graph)
    assert [n.op_type for n in graph.node] == ["Cast", "Relu", "Neg"]
    onnx.checker.check_model(helper.make_model(graph), full_check=True)
    graph.node.insert(0, helper.make_node("Cast", ["x"], ["a"], to=onnx.TensorProto.FLOAT))  # a real clash
    with pytest.raises(ValueError, match="twice"):
        drop_duplicate_casts(graph)
