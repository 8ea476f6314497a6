"""`medfuse-bench quality`: the fusion-metric table of the classic baselines and each medfuse engine.

All rows are scored on the same pairs against the same 8-bit gray references (see data.py); a
colour fusion (medfuse's RGB output, a PET/SPECT pair) is scored on its BT.601 luma. Each figure
is the mean over the pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from medfuse.benchmarks.baselines import BASELINES, fuse_to_uint8
from medfuse.benchmarks.data import Pair
from medfuse.benchmarks.engines import EngineSet, run_batched
from medfuse.runtime.metrics import DEFAULT_SSIM_DATA_RANGE, METRIC_NAMES, fusion_metrics
from medfuse.runtime.preprocess import prepare_pair, to_uint8_image

# The eight metrics issue 7's acceptance counts (AG and PSNR are reported, not counted).
SCORED_METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")


@dataclass(frozen=True)
class QualityRow:
    method: str  # baseline name or engine name
    kind: str  # "baseline" | "medfuse"
    pairs: int
    mean: dict[str, float]
    std: dict[str, float]
    ssim_data_range: float

    def to_dict(self) -> dict:
        return {"method": self.method, "kind": self.kind, "pairs": self.pairs, **self.mean,
                **{f"{k}_std": v for k, v in self.std.items()}, "ssim_data_range": self.ssim_data_range}


@dataclass
class QualityResult:
    rows: list[QualityRow]
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # pair -> column -> uint8 image


def _row(method: str, kind: str, scores: list[dict[str, float]], data_range: float) -> QualityRow:
    table = {m: np.array([s[m] for s in scores], dtype=np.float64) for m in METRIC_NAMES}
    finite = {m: v[np.isfinite(v)] for m, v in table.items()}
    mean = {m: float(v.mean()) if v.size else float("nan") for m, v in finite.items()}
    std = {m: float(v.std()) if v.size else float("nan") for m, v in finite.items()}
    return QualityRow(method, kind, len(scores), mean, std, data_range)


def _engine_images(engine, pairs: Sequence[Pair], found: EngineSet) -> list[np.ndarray]:
    prepared = [prepare_pair(p.ct, p.mri, found.preprocess) for p in pairs]
    ct = np.stack([p.ct for p in prepared])
    mri = np.stack([p.mri for p in prepared])
    fused = run_batched(engine, ct, mri)
    return [to_uint8_image(f, p.geometry) for f, p in zip(fused, prepared)]


def evaluate(pairs: Sequence[Pair], found: EngineSet | None = None, baselines: Sequence[str] = tuple(BASELINES),
             ssim_data_range: float = DEFAULT_SSIM_DATA_RANGE, keep_examples: int = 0,
             tick: Callable[[], None] = lambda: None) -> QualityResult:
    """Score every baseline and engine on `pairs`; keep the images of the first `keep_examples` pairs."""
    result = QualityResult(rows=[])
    for p in pairs[:keep_examples]:
        result.examples[p.name] = {"CT" if not p.colour else "functional": p.ref_ct, "MRI": p.ref_mri}

    def score(method: str, kind: str, images: Sequence[np.ndarray]) -> None:
        scores = [fusion_metrics(img, p.ref_ct, p.ref_mri, ssim_data_range=ssim_data_range)
                  for img, p in zip(images, pairs)]
        result.rows.append(_row(method, kind, scores, ssim_data_range))
        for img, p in zip(images[:keep_examples], pairs):
            result.examples[p.name][method] = img
        tick()

    for name in baselines:
        score(name, "baseline", [fuse_to_uint8(name, p.ref_ct, p.ref_mri) for p in pairs])
    for engine in (found.engines if found else []):
        score(engine.name, "medfuse", _engine_images(engine, pairs, found))
    return result


def wins(rows: Sequence[QualityRow], metrics: Sequence[str] = SCORED_METRICS) -> list[dict]:
    """For each medfuse row and each baseline: on how many of `metrics` medfuse is higher."""
    out = []
    for model in (r for r in rows if r.kind == "medfuse"):
        for base in (r for r in rows if r.kind == "baseline"):
            better = [m for m in metrics if model.mean[m] > base.mean[m]]
            out.append({"method": model.method, "versus": base.method, "wins": len(better),
                        "of": len(metrics), "metrics_won": better})
    return out
