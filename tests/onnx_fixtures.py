"""Small medfuse-shaped ONNX models built with onnx.helper (no torch), for runtime and bench tests.

`fused = max(ct, broadcast(mri))` per pixel, so a test can predict the output exactly; dynamic
batch, height and width; the medfuse metadata_props of the contract; and a manifest.json like the
export writes. Building one takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from medfuse.runtime.preprocess import PreprocessConfig

OPSET = 18
IR_VERSION = 9  # what onnxruntime 1.20+ reads
FILE_NAMES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def medfuse_metadata(precision: str, preprocess: PreprocessConfig, modality_pair: str = "ct-mri") -> dict[str, str]:
    return {
        "medfuse.version": "0.1.0",
        "medfuse.model_config": json.dumps({"fixture": "max"}),
        "medfuse.preprocess_config": preprocess.to_json(),
        "medfuse.checkpoint_sha256": "0" * 64,
        "medfuse.precision": precision,
        "medfuse.modality_pair": modality_pair,
    }


def _io(name: str, channels: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", channels, "H", "W"])


def _nodes(precision: str, names: tuple[str, str, str]) -> tuple[list, list]:
    """Graph body for each precision: fp16 computes in half, int8 goes through uint8 Q/DQ."""
    ct, mri, out = names
    if precision == "fp32":
        return [helper.make_node("Max", [ct, mri], [out])], []
    if precision == "fp16":
        return [helper.make_node("Cast", [ct], ["ct16"], to=TensorProto.FLOAT16),
                helper.make_node("Cast", [mri], ["mri16"], to=TensorProto.FLOAT16),
                helper.make_node("Max", ["ct16", "mri16"], ["out16"]),
                helper.make_node("Cast", ["out16"], [out], to=TensorProto.FLOAT)], []
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 255]),
             helper.make_tensor("zero", TensorProto.UINT8, [], [0])]
    nodes = []
    for src in (ct, mri):
        nodes += [helper.make_node("QuantizeLinear", [src, "scale", "zero"], [f"{src}_q"]),
                  helper.make_node("DequantizeLinear", [f"{src}_q", "scale", "zero"], [f"{src}_dq"])]
    nodes.append(helper.make_node("Max", [f"{ct}_dq", f"{mri}_dq"], [out]))
    return nodes, inits


def make_model(precision: str = "fp32", preprocess: PreprocessConfig | None = None,
               names: tuple[str, str, str] = ("ct", "mri", "fused"), metadata: bool = True,
               mri_channels: int = 1, modality_pair: str = "ct-mri") -> onnx.ModelProto:
    preprocess = preprocess or PreprocessConfig(input_size=64)
    nodes, inits = _nodes(precision, names)
    graph = helper.make_graph(nodes, f"medfuse_fixture_{precision}", [_io(names[0], 3), _io(names[1], mri_channels)],
                              [_io(names[2], 3)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if metadata:
        for key, value in medfuse_metadata(precision, preprocess, modality_pair).items():
            model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return model


def write_model(path: Path, precision: str = "fp32", **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(make_model(precision, **kwargs), str(path))
    return path


def write_model_dir(folder: Path, precisions=("fp32",), preprocess: PreprocessConfig | None = None,
                    manifest: bool = True, modality_pair: str = "ct-mri") -> Path:
    """An artifact folder as medfuse-export writes it: the ONNX variants and manifest.json."""
    folder = Path(folder)
    preprocess = preprocess or PreprocessConfig(input_size=64)
    artifacts = []
    for precision in precisions:
        path = write_model(folder / FILE_NAMES[precision], precision, preprocess=preprocess,
                           modality_pair=modality_pair)
        artifacts.append({"file": path.name, "format": "onnx", "precision": precision,
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "parity": {}})
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({
            "medfuse_version": "0.1.0", "checkpoint_sha256": "0" * 64, "modality_pair": modality_pair,
            "model_config": {"fixture": "max"}, "preprocess_config": preprocess.to_dict(), "artifacts": artifacts,
        }, indent=2))
    return folder


def expected_fused(ct: np.ndarray, mri: np.ndarray) -> np.ndarray:
    """What the fixture model computes for prepared inputs ct [B,3,S,S], mri [B,1,S,S]."""
    return np.maximum(ct, mri)
