"""The user-facing pieces of medfuse-run: preprocessing overrides, progress bar, summary lines."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from medfuse.runtime.model_dir import ModelDir, preprocess_config
from medfuse.runtime.preprocess import PreprocessConfig


def apply_overrides(cfg: PreprocessConfig, window: tuple[float, float] | None, clahe: bool | None,
                    say: Callable[[str], None]) -> PreprocessConfig:
    """The model's preprocessing with the user's --window/--clahe; says when it departs from training."""
    if window is not None:
        cfg = cfg.with_window(*window)
    if clahe is not None and clahe != cfg.clahe:
        say(f"note: --{'' if clahe else 'no-'}clahe differs from the model's training preprocessing "
            f"(clahe={cfg.clahe})")
        cfg = replace(cfg, clahe=clahe)
    return cfg


def preprocess_for(runner, model: ModelDir, window, clahe, say) -> PreprocessConfig:
    return apply_overrides(preprocess_config(runner.metadata, model, runner.path), window, clahe, say)


@contextmanager
def progress_bar(console, description: str, total: int | None) -> Iterator[tuple[Callable, Callable]]:
    """Yield (advance(outcome), set_total(n)) for a Rich progress bar on the console (stderr)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield (lambda _outcome=None: progress.advance(task)), (lambda n: progress.update(task, total=n))


def _mean_metrics(outputs: list[dict]) -> dict[str, float]:
    """Per metric, the mean of the pairs where it is finite (a CT without bone has no CTDim, a flat
    image an infinite PSNR), as medfuse-bench averages; NaN only where no pair has a value."""
    rows = [o["metrics"] for o in outputs if o.get("metrics")]
    if not rows:
        return {}
    means = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
        means[key] = round(sum(values) / len(values), 4) if values else math.nan
    return means


def print_summary(summary: dict, console) -> None:
    from rich.markup import escape  # paths may hold brackets that Rich would take for markup

    counts, seconds = summary["counts"], summary["seconds"]
    if summary["mode"] == "folder":
        rate = f", {summary['pairs_per_second']:.2f} pairs/s" if "pairs_per_second" in summary else ""
        console.print(f"fused {counts['ok']} of {counts['total']} pairs in {seconds['fuse']:.2f} s{rate}")
    for out in summary["outputs"]:
        if summary["mode"] != "folder":
            slices = f" ({out['slices']} slices)" if "slices" in out else ""
            console.print(f"wrote {out['output']}{slices}", markup=False)
        if out.get("side_by_side") and summary["mode"] != "folder":
            console.print(f"wrote {out['side_by_side']}", markup=False)
    metrics = _mean_metrics(summary["outputs"])
    if metrics:
        label = "mean metrics" if summary["mode"] == "folder" else "metrics"
        console.print(f"{label}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    for path in summary.get("unpaired", []):
        console.print(f"[yellow]unpaired[/yellow] (no file of the same name on the other side): {escape(str(path))}")
    if summary["failures"]:
        console.print(f"[red]{counts['failed']} of {counts['total']} failed:[/red]")
        for fail in summary["failures"]:
            console.print(f"  {fail['name']}: {fail['error']}", markup=False)
