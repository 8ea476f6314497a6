"""Result records -> (headers, rows of text): one formatting for report.md and the terminal."""

from __future__ import annotations

import math
from collections.abc import Sequence

from medfuse.runtime.color import CHROMA_METRIC
from medfuse.runtime.metrics import CT_DIM_METRIC, METRIC_NAMES

Table = tuple[list[str], list[list[str]]]

METRIC_DIGITS = {"EN": 3, "SD": 2, "SF": 2, "AG": 2, "MI": 3, "SCD": 3, "VIF": 3, "Qabf": 3, "SSIM": 3, "PSNR": 2,
                 CHROMA_METRIC: 2, CT_DIM_METRIC: 2}
# Reported where a row has them (benchmarks/quality.py), lower is better, never counted as wins:
# ChromaErr for functional (PET/SPECT) pairs, CTDim for CT-MRI.
EXTRA_METRICS = (CHROMA_METRIC, CT_DIM_METRIC)
PARITY_DELTAS = ("MI", "SSIM", "Qabf", "VIF")


def ms(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    if math.isnan(x):
        return "nan"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0000"


def sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def latency_table(rows: Sequence[dict]) -> Table:
    head = ["engine", "device", "batch", "p50 ms", "p90 ms", "p99 ms", "min ms", "max ms", "images/s",
            "GFLOP/s", "speedup"]
    body = [[r["engine"], r["device"], str(r["batch"]), ms(r["p50_ms"]), ms(r["p90_ms"]), ms(r["p99_ms"]),
             ms(r["min_ms"]), ms(r["max_ms"]), num(r["images_per_s"], 1), num(r["gflops_per_s"], 1),
             "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"] for r in rows]
    return head, body


def stage_table(rows: Sequence[dict]) -> Table:
    return ["stage", "ms per pair", "pairs", "what"], [[r["stage"], ms(r["ms_per_pair"]), str(r["pairs"]), r["note"]]
                                                     for r in rows]


def parity_table(rows: Sequence[dict]) -> Table:
    head = ["engine", "precision", "pairs", "max abs", "mean abs", "PSNR dB", "NaN/Inf", "tolerance (max / mean / PSNR)",
            *[f"d{m}" for m in PARITY_DELTAS], "result"]
    body = []
    for r in rows:
        tol = f"{r['tol_max_abs']:g} / {r['tol_mean_abs']:g} / {r['tol_min_psnr']:g}"
        psnr = "inf" if r["psnr"] is None else num(r["psnr"], 1)
        deltas = [num(r.get(f"delta_{m}"), 4) for m in PARITY_DELTAS]
        body.append([r["engine"], r["precision"], str(r["samples"]), sci(r["max_abs"]), sci(r["mean_abs"]), psnr, str(r["nonfinite"]),
                     tol, *deltas, "pass" if r["passed"] else "FAIL"])
    return head, body


def quality_metrics(rows: Sequence[dict]) -> tuple[str, ...]:
    """The metric columns of quality rows: the standard ten, then the extras the rows carry."""
    return METRIC_NAMES + tuple(m for m in EXTRA_METRICS if any(m in r for r in rows))


def quality_table(rows: Sequence[dict], metrics: Sequence[str] | None = None) -> Table:
    if metrics is None:
        metrics = quality_metrics(rows)
    head = ["method", "kind", "pairs", *metrics]
    body = [[r["method"], r["kind"], str(r["pairs"]), *[num(r[m], METRIC_DIGITS.get(m, 3)) for m in metrics]]
            for r in rows]
    return head, body


def wins_table(rows: Sequence[dict]) -> Table:
    """One row per medfuse engine, one column per baseline: 'won/of (metrics won)'."""
    versus = list(dict.fromkeys(r["versus"] for r in rows))
    body: dict[str, dict[str, str]] = {}
    for r in rows:
        won = ", ".join(r["metrics_won"]) or "none"
        body.setdefault(r["method"], {})[r["versus"]] = f"{r['wins']}/{r['of']} ({won})"
    return ["medfuse engine", *[f"vs {v}" for v in versus]], [
        [method, *[cells.get(v, "-") for v in versus]] for method, cells in body.items()]


def paired_table(rows: Sequence[dict]) -> Table:
    """One row per medfuse engine and baseline: the wins that hold per pair, the ties, the losses."""
    head = ["medfuse engine", "versus", "wins that hold", "ties", "losses"]
    body = []
    for r in rows:
        by = {v: [m["metric"] for m in r["metrics"] if m["verdict"] == v] for v in ("win", "tie", "loss")}
        n = len(r["metrics"])
        body.append([r["method"], r["versus"], f"{len(by['win'])}/{n} ({', '.join(by['win']) or 'none'})",
                     ", ".join(by["tie"]) or "-", ", ".join(by["loss"]) or "-"])
    return head, body


def skipped_table(rows: Sequence[dict]) -> Table:
    return ["engine", "skipped because"], [[r["name"], r["reason"]] for r in rows]


def markdown(table: Table) -> str:
    head, body = table
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def rich_table(table: Table, title: str | None = None):
    from rich.markup import escape
    from rich.table import Table as RichTable

    head, body = table
    out = RichTable(title=title, show_lines=False)
    for i, h in enumerate(head):
        out.add_column(escape(h), overflow="fold", no_wrap=i == 0)  # engine/method names stay whole
    for row in body:  # a skip reason holds pip extras ('medfuse[gpu]'), which Rich would read as markup
        out.add_row(*(escape(str(cell)) for cell in row))
    return out
