"""fp32 ONNX -> fp16 weights and compute, fp32 inputs and outputs (`model.fp16.onnx`).

TensorRT 11 dropped `BuilderFlag.FP16`: a strongly typed network takes its precision from the
ONNX file, so this file is what the fp16 engine is built from. Ops whose fp16 result overflows or
loses too much (reductions that sum a whole feature map, exp/pow/div, normalisations) stay fp32
with casts around them. ONNX Runtime's CPU provider runs the file too (it casts ops without an
fp16 kernel), which is how CI checks its parity without a GPU.
"""

from __future__ import annotations

import onnx

# Kept in fp32, on top of ONNX Runtime's own block list (ML-domain and index ops):
# - ReduceMean/ReduceSum/GlobalAveragePool: channel attention averages a whole H x W map; an fp16
#   accumulator overflows (max 65504) or loses the small terms on large inputs.
# - Exp/Pow/Sqrt/Div/Softmax/normalisations: range and cancellation problems in 10-bit mantissa.
FP32_OPS = (
    "ReduceMean", "ReduceSum", "ReduceL2", "GlobalAveragePool",
    "Exp", "Pow", "Sqrt", "Div", "Softmax", "LayerNormalization", "InstanceNormalization",
)


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    half = convert_float_to_float16(model, keep_io_types=True,
                                    op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS)))
    drop_duplicate_casts(half.graph)
    topological_sort(half.graph)
    # The converter leaves value_info entries whose element types no longer match the graph; the
    # checker's shape inference rebuilds them.
    del half.graph.value_info[:]
    return half


def drop_duplicate_casts(graph: onnx.GraphProto) -> None:
    """Keep one of several identical Cast nodes writing the same tensor name.

    Some onnxruntime releases (seen with 1.30) insert one `<name>_cast_to_fp32` Cast per blocked
    consumer of a tensor, all with the same output name, which breaks single assignment.
    """
    seen: dict[str, onnx.NodeProto] = {}
    kept = []
    for node in graph.node:
        clash = next((seen[o] for o in node.output if o in seen), None)
        if clash is None:
            kept.append(node)
            seen.update((o, node) for o in node.output)
        elif not (node.op_type == clash.op_type == "Cast" and node.input == clash.input
                  and node.attribute == clash.attribute):
            raise ValueError(f"fp16 conversion wrote tensor {node.output[0]!r} twice with different nodes")
    del graph.node[:]
    graph.node.extend(kept)


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after its inputs' producers (the converter appends its I/O casts last)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        blocked = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                blocked.append(node)
        if len(blocked) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input at node {blocked[0].name!r}")
        pending = blocked
    del graph.node[:]
    graph.node.extend(ordered)
