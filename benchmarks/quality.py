"""`medfuse-bench quality`: the fusion-metric table of the classic baselines and each medfuse engine.

All rows are scored on the same pairs against the same 8-bit gray references (see data.py); a
colour fusion (medfuse's RGB output, a PET/SPECT pair) is scored on its BT.601 luma. Each figure
is the mean over the pairs. One baseline, `maximum-of-inputs`, fuses the model's preprocessed
inputs instead of the files (baselines.py says why), with the engines' preprocessing settings.

Functional pairs (PET/SPECT): every method fuses the functional luma with the MRI, and its fused
luma gets the functional image's chroma back (a baseline as much as medfuse), so all rows are
coloured the same way. The metrics read the fused luma itself (before colouring, whose clipping
at the RGB cube would otherwise move it), and `ChromaErr` is the mean absolute Cr/Cb difference
(0-255) of the coloured result against the functional image inside its tracer uptake
(runtime/color.py): how well the colour map survived.

CT-MRI pairs: `CTDim` is how many grey levels the fusion loses against CT where CT is bright
(bone, calcification; runtime/metrics.py): what a radiologist checks first and the eight metrics
do not measure. Both are reported, lower is better, and never counted as wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from medfuse.benchmarks.baselines import BASELINE_NAMES, MAXIMUM_OF_INPUTS, fuse_to_uint8
from medfuse.benchmarks.data import Pair
from medfuse.benchmarks.engines import EngineSet, run_batched
from medfuse.benchmarks.tables import EXTRA_METRICS
from medfuse.runtime.color import CHROMA_METRIC, chroma_error, luma_of_channels, merge_luma_chroma, split_luma_chroma
from medfuse.runtime.metrics import CT_DIM_METRIC, DEFAULT_SSIM_DATA_RANGE, METRIC_NAMES, ct_dimming, fusion_metrics
from medfuse.runtime.preprocess import PreparedPair, PreprocessConfig, prepare_pair, to_uint8_image

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
    scores: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # method -> each pair's metrics

    def paired(self, metrics: Sequence[str] = SCORED_METRICS) -> list[dict]:
        """Which of the table's wins hold pair by pair (benchmarks/paired.py)."""
        from medfuse.benchmarks.paired import paired_wins

        return paired_wins(self.scores, {r.method: r.kind for r in self.rows}, metrics)


def _row(method: str, kind: str, scores: list[dict[str, float]], data_range: float) -> QualityRow:
    names = METRIC_NAMES + tuple(m for m in EXTRA_METRICS if scores and m in scores[0])
    table = {m: np.array([s[m] for s in scores], dtype=np.float64) for m in names}
    finite = {m: v[np.isfinite(v)] for m, v in table.items()}
    mean = {m: float(v.mean()) if v.size else float("nan") for m, v in finite.items()}
    std = {m: float(v.std()) if v.size else float("nan") for m, v in finite.items()}
    return QualityRow(method, kind, len(scores), mean, std, data_range)


# A fusion as scored and as shown: (8-bit image the metrics read, image a reader sees). They are
# one image for CT-MRI; for a functional pair the first is the fused luma, the second that luma in
# the source's colours, whose RGB clipping must not leak into the luma metrics.
Fused = tuple[np.ndarray, np.ndarray]


def _coloured(gray8: np.ndarray, p: Pair) -> Fused:
    if p.source_rgb is None:
        return gray8, gray8
    _, chroma = split_luma_chroma(p.source_rgb)
    return gray8, np.round(merge_luma_chroma(gray8.astype(np.float32) / 255.0, chroma) * 255.0).astype(np.uint8)


def _baseline_images(name: str, pairs: Sequence[Pair], prepared: Sequence[PreparedPair]) -> list[Fused]:
    if name == MAXIMUM_OF_INPUTS:
        return [_coloured(_maximum_of_inputs(pp), p) for pp, p in zip(prepared, pairs)]
    return [_coloured(fuse_to_uint8(name, p.ref_ct, p.ref_mri), p) for p in pairs]


def _maximum_of_inputs(prepared: PreparedPair) -> np.ndarray:
    """max(gray model input 1, model input 2) at the original size, uint8: what a network whose
    output were the pixel maximum of its own inputs would score."""
    brightest = np.maximum(prepared.ct.mean(axis=0), prepared.mri[0])
    return to_uint8_image(brightest[None], prepared.geometry)[..., 0]


def _engine_images(engine, prepared: Sequence[PreparedPair]) -> list[Fused]:
    ct = np.stack([p.ct for p in prepared])
    mri = np.stack([p.mri for p in prepared])
    fused = run_batched(engine, ct, mri)
    out = []
    for f, pp in zip(fused, prepared):
        if pp.chroma is None:
            rgb = to_uint8_image(f, pp.geometry)
            out.append((rgb, rgb))
        else:
            luma = to_uint8_image(luma_of_channels(f)[None], pp.geometry)[..., 0]
            out.append((luma, to_uint8_image(f, pp.geometry, pp.chroma)))
    return out


def _scores(fused: Fused, p: Pair, ssim_data_range: float) -> dict[str, float]:
    scored, shown = fused
    out = fusion_metrics(scored, p.ref_ct, p.ref_mri, ssim_data_range=ssim_data_range)
    if p.source_rgb is not None:
        out[CHROMA_METRIC] = chroma_error(shown, p.source_rgb)
    else:
        out[CT_DIM_METRIC] = ct_dimming(scored, p.ref_ct, p.ct.pixels if p.ct.is_hu else None)
    return out


def evaluate(pairs: Sequence[Pair], found: EngineSet | None = None, baselines: Sequence[str] = BASELINE_NAMES,
             ssim_data_range: float = DEFAULT_SSIM_DATA_RANGE, keep_examples: int = 0,
             tick: Callable[[], None] = lambda: None) -> QualityResult:
    """Score every baseline and engine on `pairs`; keep the images of the first `keep_examples` pairs."""
    result = QualityResult(rows=[])
    for p in pairs[:keep_examples]:
        first = p.source_rgb if p.source_rgb is not None else p.ref_ct
        result.examples[p.name] = {"CT" if not p.colour else "functional": first, "MRI": p.ref_mri}

    def score(method: str, kind: str, images: Sequence[Fused]) -> None:
        scores = [_scores(img, p, ssim_data_range) for img, p in zip(images, pairs)]
        result.scores[method] = scores
        result.rows.append(_row(method, kind, scores, ssim_data_range))
        for (_, shown), p in zip(images[:keep_examples], pairs):
            result.examples[p.name][method] = shown
        tick()

    # The model's inputs, prepared once for every engine and the maximum-of-inputs baseline.
    engines = found.engines if found else []
    cfg = found.preprocess if found else PreprocessConfig()
    needed = engines or MAXIMUM_OF_INPUTS in baselines
    prepared = [prepare_pair(p.ct, p.mri, cfg, p.modality_pair) for p in pairs] if needed else []
    for name in baselines:
        score(name, "baseline", _baseline_images(name, pairs, prepared))
    for engine in engines:
        score(engine.name, "medfuse", _engine_images(engine, prepared))
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
