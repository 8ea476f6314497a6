"""Compare an artifact's output with the PyTorch fp32 reference, against per-precision tolerances.

numpy only (the fusion metrics are imported lazily), so the benchmarks and the runtime can reuse
it without torch. Outputs are fused images in [0, 1], so errors are in image units and PSNR uses
a peak of 1.

Tolerances, and why:
- fp32: ONNX Runtime and PyTorch run the same float32 arithmetic in a different order; anything
  above 1e-4 means a wrong graph, not rounding.
- fp16: half precision has an 11-bit significand (relative step ~4.9e-4); through ~40 layers the
  error grows to a few 1e-3 on an output in [0, 1]. A max of 2e-2 (5 grey levels of 255) and a
  PSNR of at least 45 dB allow that and catch overflow, which shows as NaN/Inf or large errors.
- int8: 8-bit activations give steps of ~1/255 of each tensor's calibrated range, and those add
  up; 0.25 max, 0.02 mean and 30 dB PSNR catch a broken calibration while accepting that
  quantisation is visible in the worst pixel. The fusion-metric change is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from medfuse.runtime.errors import MedfuseError


@dataclass(frozen=True)
class Tolerance:
    max_abs: float  # largest allowed |candidate - reference| over all pixels
    mean_abs: float  # largest allowed mean |candidate - reference|
    min_psnr: float  # dB, peak 1.0


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-4, mean_abs=1e-5, min_psnr=80.0),
    "fp16": Tolerance(max_abs=2e-2, mean_abs=2e-3, min_psnr=45.0),
    "int8": Tolerance(max_abs=0.25, mean_abs=0.02, min_psnr=30.0),
}


@dataclass(frozen=True)
class ParityResult:
    precision: str
    samples: int  # images compared
    max_abs: float
    mean_abs: float
    psnr: float  # dB; inf when identical
    nonfinite: int  # NaN or Inf values in the candidate
    passed: bool
    tolerance: Tolerance
    # metric name -> mean(candidate metric - reference metric); None when metrics are unavailable
    metric_delta: dict[str, float] | None = field(default=None)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["psnr"] = None if math.isinf(self.psnr) else self.psnr  # JSON has no Infinity
        return data

    def summary(self) -> str:
        return (f"{self.precision}: max {self.max_abs:.2e}, mean {self.mean_abs:.2e}, "
                f"PSNR {self.psnr:.1f} dB, NaN/Inf {self.nonfinite}")


def psnr(reference: np.ndarray, candidate: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((candidate.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def compare(reference: np.ndarray, candidate: np.ndarray, precision: str, *,
            ct: np.ndarray | None = None, mri: np.ndarray | None = None) -> ParityResult:
    """Errors of `candidate` against `reference` (both [N,3,H,W]); metric change when ct/mri given."""
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    tol = TOLERANCES[precision]
    finite = np.isfinite(candidate)
    nonfinite = int(candidate.size - np.count_nonzero(finite))
    diff = np.abs(np.where(finite, candidate, 0.0).astype(np.float64) - reference.astype(np.float64))
    max_abs, mean_abs = float(diff.max()), float(diff.mean())
    peak_snr = psnr(reference, np.where(finite, candidate, 0.0))
    passed = nonfinite == 0 and max_abs <= tol.max_abs and mean_abs <= tol.mean_abs and peak_snr >= tol.min_psnr
    delta = metric_delta(reference, candidate, ct, mri) if ct is not None and mri is not None else None
    return ParityResult(precision, len(reference), max_abs, mean_abs, peak_snr, nonfinite, passed, tol, delta)


def metric_delta(reference: np.ndarray, candidate: np.ndarray, ct: np.ndarray, mri: np.ndarray) -> dict[str, float] | None:
    """Mean change of each fusion metric, candidate minus reference; None without the metrics module."""
    try:
        from medfuse.runtime.metrics import fusion_metrics
    except ImportError:
        return None
    deltas: dict[str, list[float]] = {}
    for ref, cand, a, b in zip(reference, candidate, ct, mri):
        sources = (_to255(a[0]), _to255(b[0]))
        base = fusion_metrics(_to255(ref.transpose(1, 2, 0)), *sources)
        new = fusion_metrics(_to255(np.nan_to_num(cand).transpose(1, 2, 0)), *sources)
        for name, value in base.items():
            if math.isfinite(value) and math.isfinite(new[name]):
                deltas.setdefault(name, []).append(new[name] - value)
    return {name: float(np.mean(values)) for name, values in deltas.items()}


def _to255(x: np.ndarray) -> np.ndarray:
    """Model range [0, 1] -> the metrics' 8-bit scale, rounded as a written PNG would be."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0)


def require(result: ParityResult, artifact: str) -> ParityResult:
    """Raise a one-sentence MedfuseError when the artifact is over its tolerance."""
    if result.passed:
        return result
    tol = result.tolerance
    raise MedfuseError(
        f"{result.precision} output differs from PyTorch beyond tolerance ({result.summary()}; allowed max "
        f"{tol.max_abs:g}, mean {tol.mean_abs:g}, PSNR >= {tol.min_psnr:g} dB, no NaN/Inf)", artifact)
