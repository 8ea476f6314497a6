"""PyTorch model -> one self-contained, checked fp32 ONNX file with medfuse metadata.

The dynamo exporter (`torch.onnx.export(dynamo=True)`) traces with `torch.export`. The batch axis
is always dynamic; height and width are exported as dynamic multiples of 32 (the encoder's total
stride) when the model traces that way, else fixed at the preprocessing input size.
"""

from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import onnx

from medfuse.export.metadata import set_metadata
from medfuse.runtime.atomic import atomic_output
from medfuse.runtime.errors import MedfuseError

INPUTS = ("ct", "mri")
OUTPUT = "fused"
MIN_OPSET = 18
DEFAULT_OPSET = 18
STRIDE = 32  # total encoder downsampling: H and W must be multiples of it
MAX_SIDE = 4096  # upper bound of the dynamic H/W range

log = logging.getLogger(__name__)


def dynamic_shapes(spatial: bool) -> tuple[dict, dict]:
    """Per positional input (ct, mri): axis -> Dim. Positional, so forward's argument names do not matter."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=4096)
    axes = {0: batch}
    if spatial:
        axes |= {2: STRIDE * Dim("h", min=1, max=MAX_SIDE // STRIDE),
                 3: STRIDE * Dim("w", min=1, max=MAX_SIDE // STRIDE)}
    return dict(axes), dict(axes)


def trace_to_onnx(model, input_size: int, opset: int, spatial: bool) -> onnx.ModelProto:
    """Run the dynamo exporter; returns the in-memory ModelProto (weights embedded)."""
    import torch

    if opset < MIN_OPSET:
        raise MedfuseError(f"--opset must be {MIN_OPSET} or newer (the dynamo exporter's minimum), got {opset}")
    model = model.eval()
    example = (torch.rand(2, 3, input_size, input_size), torch.rand(2, 1, input_size, input_size))
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # the exporter prints progress lines
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, example, input_names=list(INPUTS), output_names=[OUTPUT], opset_version=opset,
            dynamo=True, dynamic_shapes=dynamic_shapes(spatial), external_data=False, verbose=False)
    return program.model_proto


def export_model(model, input_size: int, opset: int = DEFAULT_OPSET) -> tuple[onnx.ModelProto, bool]:
    """Export with dynamic H/W when the model allows it; returns (model, spatial_is_dynamic)."""
    try:
        return trace_to_onnx(model, input_size, opset, spatial=True), True
    except MedfuseError:
        raise
    except Exception as err:  # torch.export rejects the symbolic H/W for some graphs
        log.info("dynamic height/width rejected by torch.export (%s); exporting a fixed %d x %d",
                 type(err).__name__, input_size, input_size)
        return trace_to_onnx(model, input_size, opset, spatial=False), False


def save_checked(model: onnx.ModelProto, path: str | Path, metadata: dict[str, str]) -> Path:
    """Add metadata, run the full checker (with shape inference), write one file atomically."""
    set_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    with atomic_output(path) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    return Path(path)
