"""One function per ONNX variant (fp32, fp16, int8) and the table that names them.

Each variant is made, checked by `onnx.checker`, saved with its metadata and compared with
PyTorch by the same `export_variant`; a variant may add checks of its own (fp16: real half
arithmetic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from medfuse.export.context import Context
from medfuse.export.fp16 import convert_fp16
from medfuse.export.int8 import quantize_int8
from medfuse.export.manifest import ArtifactRecord
from medfuse.export.metadata import with_precision
from medfuse.export.onnx_export import export_model, save_checked
from medfuse.export.parity import compare, require
from medfuse.export.runners import onnx_outputs, reference_outputs, torch_outputs
from medfuse.runtime.errors import MedfuseError


def make_fp32(ctx: Context) -> onnx.ModelProto:
    model, ctx.spatial_dynamic = export_model(ctx.model, ctx.input_size, ctx.request.opset)
    return model


def make_fp16(ctx: Context) -> onnx.ModelProto:
    return convert_fp16(onnx.load(str(ctx.staging / VARIANTS["fp32"].filename)))


def make_int8(ctx: Context) -> onnx.ModelProto:
    return quantize_int8(ctx.staging / VARIANTS["fp32"].filename, ctx.calib_ct, ctx.calib_mri)


HALF_CHECK_SIDE = 64  # centre crop the reference evaluator runs on (~10 s for the full model)


def check_half_arithmetic(ctx: Context, path: Path) -> dict:
    """fp16 parity with real half-precision arithmetic, on a centre crop of the first parity pair.

    ONNX Runtime's CPU provider computes most fp16 nodes in fp32, so its figures prove the fp16
    weights and graph but not the half maths a GPU runs; the reference evaluator does that maths.
    """
    if not ctx.spatial_dynamic and ctx.input_size > HALF_CHECK_SIDE:
        return {"skipped": f"the file has fixed {ctx.input_size}x{ctx.input_size} inputs; the reference "
                           f"evaluator is too slow at that size"}
    side = min(HALF_CHECK_SIDE, ctx.input_size)
    lo = (ctx.input_size - side) // 2
    crop = (slice(0, 1), slice(None), slice(lo, lo + side), slice(lo, lo + side))
    ct, mri = np.ascontiguousarray(ctx.ct[crop]), np.ascontiguousarray(ctx.mri[crop])
    result = compare(torch_outputs(ctx.model, ct, mri), reference_outputs(path, ct, mri), "fp16")
    require(result, f"{path.name} (half-precision arithmetic)")
    return {**result.to_dict(), "inputs": f"{side}x{side} centre crop of 1 pair, ONNX reference evaluator"}


@dataclass(frozen=True)
class Variant:
    filename: str
    make: Callable[[Context], onnx.ModelProto]
    label: str  # progress text
    extra_checks: dict[str, Callable[[Context, Path], dict]] = field(default_factory=dict)  # -> parity[name]


VARIANTS: dict[str, Variant] = {
    "fp32": Variant("model.onnx", make_fp32, "Exporting fp32 ONNX (torch.onnx dynamo)"),
    "fp16": Variant("model.fp16.onnx", make_fp16, "Converting to fp16 ONNX and checking half arithmetic",
                    {"half_arithmetic": check_half_arithmetic}),
    "int8": Variant("model.int8.onnx", make_int8, "Quantising to int8 QDQ ONNX (calibrating)"),
}


def refuse_unstable_model(ctx: Context, tolerance: float, onnx_error: float) -> None:
    """When fp32 ONNX misses PyTorch, say whether PyTorch misses itself: the same inputs run one
    image at a time instead of in fours. If that differs beyond the tolerance too, the model
    amplifies float rounding (a BatchNorm channel of near-zero variance, typical of a barely
    trained model) and no exporter can match it: the export is not what is wrong."""
    alone = torch_outputs(ctx.model, ctx.ct, ctx.mri, chunk=1)
    drift = float(np.abs(alone - ctx.reference).max())
    if drift > tolerance:
        raise MedfuseError(f"the model is numerically unstable: the fp32 ONNX output is {onnx_error:.1e} from "
                           f"PyTorch's, but PyTorch's own outputs for the same inputs run one at a time or in fours "
                           f"are {drift:.1e} apart, so no export can match it; usually a barely trained model "
                           "(train longer)", ctx.request.checkpoint)


def export_variant(ctx: Context, precision: str) -> ArtifactRecord:
    """Make, check and save one ONNX file, then compare it with PyTorch; over tolerance raises."""
    variant = VARIANTS[precision]
    path = save_checked(variant.make(ctx), ctx.staging / variant.filename, with_precision(ctx.metadata, precision))
    outputs = onnx_outputs(path, ctx.ct, ctx.mri, threads=ctx.request.threads)
    result = compare(ctx.reference, outputs, precision, ct=ctx.ct, mri=ctx.mri)
    if not result.passed and precision == "fp32":
        refuse_unstable_model(ctx, result.tolerance.max_abs, result.max_abs)
    require(result, variant.filename)
    parity = {**result.to_dict(), "inputs": ctx.inputs_text}
    for name, check in variant.extra_checks.items():
        parity[name] = check(ctx, path)
    axes = ["batch", "height", "width"] if ctx.spatial_dynamic else ["batch"]
    return ArtifactRecord.of(path, "onnx", precision, parity, opset=ctx.request.opset, dynamic_axes=axes)
