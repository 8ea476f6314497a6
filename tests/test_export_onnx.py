"""fp32 ONNX export: checked, self-contained, named I/O, metadata, dynamic axes, parity with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from export_support import TINY_SIZE, random_pair, tiny_export
from medfuse.export import metadata as meta
from medfuse.export.onnx_export import trace_to_onnx
from medfuse.export.parity import TOLERANCES, compare
from medfuse.export.runners import onnx_outputs, ort_session, torch_outputs
from medfuse.runtime.errors import MedfuseError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return tiny_export(tmp_path_factory.getbasetemp())


def test_file_is_checked_and_self_contained(exported):
    path: Path = exported["path"]
    onnx.checker.check_model(str(path), full_check=True)
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no .data side file, no temp left
    model = onnx.load(str(path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18


def test_inputs_and_output_named_and_typed(exported):
    model = onnx.load(str(exported["path"]))
    io = {v.name: v.type.tensor_type for v in [*model.graph.input, *model.graph.output]}
    assert set(io) == {"ct", "mri", "fused"}
    assert all(t.elem_type == onnx.TensorProto.FLOAT for t in io.values())
    channels = {name: t.shape.dim[1].dim_value for name, t in io.items()}
    assert channels == {"ct": 3, "mri": 1, "fused": 3}
    assert io["ct"].shape.dim[0].dim_param  # symbolic batch axis


def test_metadata_carries_configs_and_checkpoint(exported):
    props = meta.read_metadata(exported["path"])
    assert props[meta.CHECKPOINT_SHA256] == exported["sha"]
    assert props[meta.PRECISION] == "fp32"
    assert props[meta.MODALITY_PAIR] == "ct-mri"
    assert json.loads(props[meta.MODEL_CONFIG]) == exported["model_cfg"].to_dict()
    assert json.loads(props[meta.PREPROCESS_CONFIG])["input_size"] == exported["pre_cfg"].input_size
    assert props[meta.VERSION]


def test_ort_matches_pytorch_within_fp32_tolerance(exported):
    ct, mri = random_pair(2)
    result = compare(torch_outputs(exported["model"], ct, mri), onnx_outputs(exported["path"], ct, mri), "fp32")
    assert result.passed, result.summary()
    assert result.max_abs <= TOLERANCES["fp32"].max_abs and result.nonfinite == 0


@pytest.mark.parametrize("batch, height, width", [(1, TINY_SIZE, TINY_SIZE), (3, TINY_SIZE, TINY_SIZE), (2, 96, 64)])
def test_dynamic_batch_and_size(exported, batch, height, width):
    if (height, width) != (TINY_SIZE, TINY_SIZE) and not exported["dynamic"]:
        pytest.skip("this model exported with fixed H/W (torch.export rejected symbolic sizes)")
    ct, mri = random_pair(batch, height, width, seed=batch)
    fused = ort_session(exported["path"]).run(["fused"], {"ct": ct, "mri": mri})[0]
    assert fused.shape == (batch, 3, height, width)
    np.testing.assert_allclose(fused, torch_outputs(exported["model"], ct, mri), atol=TOLERANCES["fp32"].max_abs)


def test_opset_below_18_is_a_user_error(exported):
    with pytest.raises(MedfuseError, match="opset"):
        trace_to_onnx(exported["model"], TINY_SIZE, opset=17, spatial=False)
