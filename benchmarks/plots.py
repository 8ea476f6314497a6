"""The report's PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medfuse.runtime.atomic import atomic_output
from medfuse.runtime.metrics import METRIC_NAMES

BASELINE_COLOUR = "#9e9e9e"
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def latency_chart(rows: Sequence[dict], path: Path, machine: str = "") -> Path:
    """p50 per call for each engine (groups) and batch (bars), with p10-p90 error bars.

    A linear axis from zero: bar heights compare as the times do (on a log axis a bar half as
    tall reads as many times faster). `machine` names where it ran, in the title.
    """
    plt = _pyplot()
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(engines) + 2), 4.2))
    width = 0.8 / max(1, len(batches))
    for j, batch in enumerate(batches):
        got = {r["engine"]: r for r in rows if r["batch"] == batch}
        x = [i + (j - (len(batches) - 1) / 2) * width for i, e in enumerate(engines) if e in got]
        p50 = np.array([got[e]["p50_ms"] for e in engines if e in got])
        lo = p50 - np.array([got[e]["p10_ms"] for e in engines if e in got])
        hi = np.array([got[e]["p90_ms"] for e in engines if e in got]) - p50
        ax.bar(x, p50, width, yerr=[lo, hi], capsize=3, label=f"batch {batch}", color=MODEL_COLOURS[j % 7])
    ax.set_xticks(range(len(engines)), engines, rotation=20, ha="right")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("ms per call (p50, bars p10-p90)")
    ax.set_title("Latency per engine and batch" + (f"\n{machine}" if machine else ""), fontsize=10)
    ax.legend()
    return _save(fig, path)


def quality_chart(rows: Sequence[dict], path: Path, metrics: Sequence[str] = METRIC_NAMES) -> Path:
    """One panel per metric: baselines grey, medfuse engines in colour."""
    plt = _pyplot()
    cols = 5
    fig, axes = plt.subplots((len(metrics) + cols - 1) // cols, cols, figsize=(3.2 * cols, 3.0 * ((len(metrics) + cols - 1) // cols)))
    methods = [r["method"] for r in rows]
    colours = []
    k = 0
    for r in rows:
        colours.append(BASELINE_COLOUR if r["kind"] == "baseline" else MODEL_COLOURS[k % 7])
        k += r["kind"] != "baseline"
    for ax, metric in zip(np.ravel(axes), metrics):
        values = [r[metric] if np.isfinite(r[metric]) else 0.0 for r in rows]
        ax.bar(range(len(rows)), values, color=colours)
        bar = next((r[metric] for r in rows if r["method"] == "maximum"), None)
        if bar is not None and np.isfinite(bar):  # the pixel maximum: the baseline to beat
            ax.axhline(bar, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(metric if metric in METRIC_NAMES else f"{metric} (lower is better)")
        ax.set_xticks(range(len(rows)), methods, rotation=60, ha="right", fontsize=7)
    for ax in np.ravel(axes)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("Fusion quality: medfuse (colour) against the classic baselines (grey); dashed: pixel maximum")
    fig.tight_layout()
    return _save(fig, path)


def comparison_grid(examples: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Rows: pairs; columns: the sources, each baseline, each medfuse engine."""
    plt = _pyplot()
    names = list(examples)
    columns = list(dict.fromkeys(c for cols in examples.values() for c in cols))
    fig, axes = plt.subplots(len(names), len(columns), figsize=(2.2 * len(columns), 2.3 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j, col in enumerate(columns):
            ax = axes[i][j]
            img = examples[name].get(col)
            if img is not None:
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col, fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
