"""`medfuse-bench latency`: how fast each engine fuses, measured fairly in one process.

Fairness: all engines run in one process on the same input batch, interleaved (A B C A B C ...)
so that a slow-down of a shared machine hits every engine alike; warm-up calls (which include
ONNX Runtime's and TensorRT's first-call optimisation) are not timed. Each timed call starts from
host numpy arrays and ends with the result back on the host, so on a GPU the host-device copies
ARE included and every call ends synchronised (the device-to-host copy waits for the stream).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from medfuse.benchmarks.engines import REFERENCE, Engine, EngineSet

DEFAULT_BATCHES = (1, 4, 8)
COPIES_NOTE = "host<->device copies included (numpy in, numpy out; each call ends synchronised)"


@dataclass(frozen=True)
class LatencyRow:
    engine: str
    precision: str
    device: str
    batch: int
    iters: int
    p10_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    images_per_s: float  # batch / p50
    gflops_per_s: float | None  # achieved: model FLOPs x batch / p50; None without a FLOP count
    speedup: float | None  # p50 of pytorch-fp32 at this batch / this p50; None without the reference
    copies_included: bool

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(engine: Engine, batch: int, samples_s: list[float], flops: int | None) -> dict:
    ms = np.asarray(samples_s) * 1e3
    p10, p50, p90, p99 = (float(np.percentile(ms, q)) for q in (10, 50, 90, 99))
    return dict(engine=engine.name, precision=engine.precision, device=engine.device, batch=batch,
                iters=len(ms), p10_ms=p10, p50_ms=p50, p90_ms=p90, p99_ms=p99,
                min_ms=float(ms.min()), max_ms=float(ms.max()), images_per_s=batch / (p50 / 1e3),
                gflops_per_s=None if flops is None else flops * batch / (p50 / 1e3) / 1e9)


def _with_speedup(rows: list[dict]) -> list[LatencyRow]:
    ref = {r["batch"]: r["p50_ms"] for r in rows if r["engine"] == REFERENCE}
    return [LatencyRow(**r, speedup=(ref[r["batch"]] / r["p50_ms"]) if r["batch"] in ref else None,
                       copies_included=True) for r in rows]


def input_batch(ct: np.ndarray, mri: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """`batch` pairs cycled from the prepared stack (real content, not zeros: int8 ranges matter)."""
    idx = np.arange(batch) % len(ct)
    return np.ascontiguousarray(ct[idx]), np.ascontiguousarray(mri[idx])


def time_interleaved(engines: list[Engine], ct: np.ndarray, mri: np.ndarray, warmup: int, iters: int,
                     tick: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per call for each engine, calls interleaved engine by engine, after warm-up."""
    for engine in engines:
        for _ in range(warmup):
            engine.run(ct, mri)
        tick()
    samples: dict[str, list[float]] = {e.name: [] for e in engines}
    for _ in range(iters):
        for engine in engines:
            start = time.perf_counter()
            engine.run(ct, mri)
            samples[engine.name].append(time.perf_counter() - start)
        tick()
    return samples


def measure(found: EngineSet, ct: np.ndarray, mri: np.ndarray, batches=DEFAULT_BATCHES, warmup: int = 2,
            iters: int = 10, tick: Callable[[], None] = lambda: None) -> list[LatencyRow]:
    rows = []
    for batch in batches:
        engines = [e for e in found.engines if e.max_batch is None or batch <= e.max_batch]
        a, b = input_batch(ct, mri, batch)
        samples = time_interleaved(engines, a, b, warmup, iters, tick)
        rows += [summarise(e, batch, samples[e.name], found.flops_per_image) for e in engines]
    return _with_speedup(rows)


def ticks_needed(n_batches: int, n_engines: int, iters: int) -> int:
    """Progress ticks `measure` makes (for a progress bar's total)."""
    return n_batches * (n_engines + iters)
