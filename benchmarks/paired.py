"""Whether a win in the quality table holds pair by pair.

The table compares means over the held-out pairs; a mean ahead by 0.0003 is a win there and a coin
toss on the pairs. For each medfuse engine against each baseline and metric this gives the mean
per-pair difference (medfuse minus baseline), a 95 % percentile-bootstrap interval of that mean
(pairs resampled with replacement, a fixed seed so reports repeat), and on how many pairs medfuse
is ahead. A win *holds* when the interval lies above zero, a loss when below; otherwise a tie.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95


def compare(model: Sequence[Mapping[str, float]], base: Sequence[Mapping[str, float]], metric: str,
            resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Per-pair comparison of one metric; pairs where either score is not finite are left out."""
    diffs = np.array([m[metric] - b[metric] for m, b in zip(model, base, strict=True)], dtype=np.float64)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return {"metric": metric, "pairs": 0, "mean": None, "low": None, "high": None, "won": 0, "verdict": "n/a"}
    picks = np.random.default_rng(seed).integers(0, diffs.size, (resamples, diffs.size))
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(diffs[picks].mean(axis=1), [tail, 100 - tail])
    verdict = "win" if low > 0 else "loss" if high < 0 else "tie"
    return {"metric": metric, "pairs": int(diffs.size), "mean": float(diffs.mean()), "low": float(low),
            "high": float(high), "won": int((diffs > 0).sum()), "verdict": verdict}


def paired_wins(scores: Mapping[str, Sequence[Mapping[str, float]]], kinds: Mapping[str, str],
                metrics: Sequence[str]) -> list[dict]:
    """For each medfuse method and each baseline: every metric's per-pair comparison."""
    out = []
    for model in (m for m, kind in kinds.items() if kind == "medfuse"):
        for base in (b for b, kind in kinds.items() if kind == "baseline"):
            rows = [compare(scores[model], scores[base], metric) for metric in metrics]
            out.append({"method": model, "versus": base, "metrics": rows})
    return out
