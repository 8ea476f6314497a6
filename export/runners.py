"""Run the PyTorch reference and an ONNX file on the same batch of prepared pairs.

Both take numpy arrays ct [N,3,S,S] and mri [N,1,S,S] in [0, 1] and return fused [N,3,S,S],
computed `chunk` images at a time to bound memory on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHUNK = 4


def torch_outputs(model, ct: np.ndarray, mri: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(ct), chunk):
            fused = model(torch.from_numpy(ct[i:i + chunk]), torch.from_numpy(mri[i:i + chunk]))
            outs.append(fused.float().numpy())
    return np.concatenate(outs)


def ort_session(path: str | Path, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (one per core)
    options.log_severity_level = 3  # the fp16 file triggers harmless cast-insertion warnings on CPU
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_outputs(path: str | Path, ct: np.ndarray, mri: np.ndarray, chunk: int = CHUNK,
                 threads: int | None = None) -> np.ndarray:
    session = ort_session(path, threads or 0)
    outs = [session.run(["fused"], {"ct": ct[i:i + chunk], "mri": mri[i:i + chunk]})[0]
            for i in range(0, len(ct), chunk)]
    return np.concatenate(outs).astype(np.float32)


def reference_outputs(path: str | Path, ct: np.ndarray, mri: np.ndarray) -> np.ndarray:
    """The ONNX reference evaluator (numpy): computes every node in its declared type, so an fp16
    file runs in real half precision here, unlike ONNX Runtime's CPU provider. Slow: small inputs only."""
    from onnx.reference import ReferenceEvaluator

    # Its Sigmoid evaluates both branches of a `where` in half precision, and the unused one
    # overflows for large inputs: numpy warnings about values that are then discarded, which
    # users took for a broken export. A real NaN or Inf in the output still fails the parity check.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return ReferenceEvaluator(str(path)).run(["fused"], {"ct": ct, "mri": mri})[0].astype(np.float32)


def engine_outputs(plan: str | Path, sidecar: dict, ct: np.ndarray, mri: np.ndarray, min_batch: int = 1) -> np.ndarray:
    """Run a built engine through the runtime's TensorRT runner (pads up to the profile's min batch)."""
    from medfuse.runtime.backends.tensorrt_backend import PlanInfo, TensorRTRunner

    count, pad = len(ct), max(0, min_batch - len(ct))
    if pad:
        ct, mri = np.concatenate([ct, np.repeat(ct[-1:], pad, 0)]), np.concatenate([mri, np.repeat(mri[-1:], pad, 0)])
    runner = TensorRTRunner(Path(plan), PlanInfo.from_sidecar(sidecar, Path(plan)))
    runner.activate()
    try:
        return runner.infer({"ct": ct, "mri": mri})["fused"][:count].astype(np.float32)
    finally:
        runner.close()
