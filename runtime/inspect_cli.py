"""`medfuse-inspect`: what a model folder holds, whether it is intact, and what would run it here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from medfuse.runtime.errors import run_cli
from medfuse.runtime.versions import version_option

EXIT_PROBLEMS = 1

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False,
                  help="Describe an exported medfuse model: provenance, preprocessing, artifacts and their "
                       "parity, file integrity, and the backend medfuse-run would choose here.")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"


def _capability(cc) -> str:
    return ".".join(map(str, cc)) if isinstance(cc, (list, tuple)) else str(cc or "?")


def _parity(parity: dict | None) -> str:
    if parity is None:
        return "-"
    verdict = {True: "pass", False: "FAIL"}.get(parity.get("passed"), "unknown")
    figures = []
    if isinstance(parity.get("psnr"), (int, float)):
        figures.append(f"{parity['psnr']:.1f} dB")
    if isinstance(parity.get("max_abs"), (int, float)):
        figures.append(f"max {parity['max_abs']:.1e}")
    return f"{verdict} ({', '.join(figures)})" if figures else verdict


def _preprocess_text(p: dict, modality_pair: str = "ct-mri") -> str:
    clahe = f"CLAHE clip {p['clahe_clip_limit']}" if p.get("clahe") else "no CLAHE"
    # a functional image is scaled by SUV or its own range (runtime/functional.py), never windowed
    first = (f"CT window {p['ct_window_center']:g}/{p['ct_window_width']:g} HU" if modality_pair == "ct-mri"
             else f"{modality_pair.split('-')[0].upper()}: SUV 0-10 or its 99.5th percentile, hot colour map if gray")
    return (f"{p['input_size']}x{p['input_size']} letterbox ({p['interpolation']}), {first}, MRI percentiles "
            f"{p['mri_percentile_low']:g}-{p['mri_percentile_high']:g}, {clahe}")


def _head(report) -> list[tuple[str, str]]:
    found_by = report.found_by
    rows = [("model folder", f"{report.folder} (from {found_by})"),
            ("exported by", f"medfuse {report.medfuse_version or 'unknown'}"),
            ("checkpoint sha256", report.checkpoint_sha256 or "unknown"),
            ("modality pair", report.modality_pair),
            ("preprocessing", _preprocess_text(report.preprocess, report.modality_pair))]
    if report.model_config:
        cfg = report.model_config
        keys = ("encoder", "width", "output_head", "decoder_upsample", "refine_channels")
        network = ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg)
        if network:
            rows.append(("network", network))
    if report.engine:
        eng = report.engine
        rows.append(("TensorRT engine", f"TensorRT {eng.get('tensorrt_version', '?')}, built on "
                                        f"{eng.get('gpu_name', eng.get('gpu', '?'))} (compute capability "
                                        f"{_capability(eng.get('compute_capability'))})"))
    return rows


def print_report(report, console) -> None:
    """Plain lines for the facts (never wrapped, so they stay greppable), a table for the artifacts."""
    from rich.markup import escape
    from rich.table import Table

    for key, value in _head(report):
        console.print(f"[bold]{key + ':':<19}[/bold]{escape(value)}")
    table = Table(title="artifacts", title_justify="left")
    for column in ("file", "precision", "size", "sha256", "parity at export", "runs here"):
        table.add_column(column)
    for art in report.artifacts:
        state = "[red]DIFFERS[/red]" if art.sha256 == "differs" else escape(art.sha256)
        table.add_row(escape(art.file), escape(art.precision), _size(art.size_bytes), state,
                      escape(_parity(art.parity)), escape(art.runs_here))
    console.print(table)
    console.print(f"[bold]medfuse-run --backend auto here:[/bold] {escape(report.auto_choice)}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {escape(problem)}")


@app.command()
def inspect(
    model: Annotated[Optional[Path], typer.Argument(help="Model folder (or one .onnx/.plan in it); default: "
                                                         "$MEDFUSE_MODEL, else ~/.cache/medfuse/model.")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Hash every file against manifest.json "
                                                                      "(about 0.3 s per 220 MB).")] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as one JSON document.")] = False,
    version: Annotated[bool, version_option("medfuse-inspect")] = False,
) -> None:
    """Describe MODEL; exit 1 when a file is damaged or missing or failed its parity check at export."""
    from rich.console import Console

    from medfuse.runtime.model_dir import open_model_dir
    from medfuse.runtime.model_report import inspect_model

    report = inspect_model(open_model_dir(model, label="the MODEL argument"), verify=verify)
    if json_output:
        from medfuse.runtime.json_safe import json_safe

        typer.echo(json.dumps(json_safe(report.to_dict()), indent=2, allow_nan=False))
    else:
        wide = None if sys.stdout.isatty() else 200  # piped to a file or a log: no wrapped table cells
        print_report(report, Console(highlight=False, soft_wrap=True, width=wide))
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
