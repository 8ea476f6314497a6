"""`medfuse-bench parity`: each engine against the PyTorch fp32 reference, judged per precision.

The comparison and the fp32/fp16/int8 tolerances are export.parity's (the same gate
`medfuse-export` applies). PyTorch bf16 autocast is not an export precision, so its tolerance is
set here: bf16 keeps 8 significand bits (relative step 3.9e-3, eight times fp16's), so it gets a
looser bound than fp16 and a tighter one than int8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from medfuse.benchmarks.engines import REFERENCE, EngineSet, run_batched
from medfuse.export.parity import TOLERANCES, ParityResult, Tolerance, compare
from medfuse.runtime.errors import MedfuseError

BENCH_TOLERANCES: dict[str, Tolerance] = {
    **TOLERANCES,
    "bf16": Tolerance(max_abs=0.1, mean_abs=0.01, min_psnr=35.0),
}


@dataclass(frozen=True)
class ParityRow:
    engine: str
    device: str
    result: ParityResult

    def to_dict(self) -> dict:
        data = self.result.to_dict()
        tol = data.pop("tolerance")
        delta = data.pop("metric_delta") or {}
        return {"engine": self.engine, "device": self.device, **data,
                **{f"tol_{k}": v for k, v in tol.items()}, **{f"delta_{k}": v for k, v in delta.items()}}


def _passes(res: ParityResult, tol: Tolerance) -> bool:
    return (res.nonfinite == 0 and res.max_abs <= tol.max_abs and res.mean_abs <= tol.mean_abs
            and res.psnr >= tol.min_psnr)


def judge(reference: np.ndarray, candidate: np.ndarray, precision: str, ct: np.ndarray, mri: np.ndarray) -> ParityResult:
    """export.parity.compare with the bench's tolerance table (adds bf16)."""
    if precision not in BENCH_TOLERANCES:
        raise ValueError(f"no parity tolerance for precision {precision!r}")
    res = compare(reference, candidate, precision if precision in TOLERANCES else "fp16", ct=ct, mri=mri)
    tol = BENCH_TOLERANCES[precision]
    return replace(res, precision=precision, tolerance=tol, passed=_passes(res, tol))


def measure(found: EngineSet, ct: np.ndarray, mri: np.ndarray,
            tick: Callable[[], None] = lambda: None) -> list[ParityRow]:
    """Rows for every engine except the reference; MedfuseError without the PyTorch reference."""
    ref_engine = found.get(REFERENCE)
    if ref_engine is None:
        why = next((s.reason for s in found.skipped if s.name.startswith("pytorch")), "pass --checkpoint CKPT")
        raise MedfuseError(f"parity compares with the PyTorch fp32 reference, which cannot run: {why}")
    reference = run_batched(ref_engine, ct, mri)
    tick()
    rows = []
    for engine in found.engines:
        if engine.name == REFERENCE:
            continue
        rows.append(ParityRow(engine.name, engine.device, judge(reference, run_batched(engine, ct, mri),
                                                                 engine.precision, ct, mri)))
        tick()
    return rows


def all_passed(rows: list[ParityRow]) -> bool:
    return all(r.result.passed for r in rows)
