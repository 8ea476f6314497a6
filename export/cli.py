"""`medfuse-export CKPT -o ARTIFACTS_DIR`: a thin Typer command over `pipeline.run_export`.

Rich shows a spinner per slow step (export, conversion, calibration, engine build) on stderr and a
table of what was written at the end.
"""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

from medfuse.export.onnx_export import DEFAULT_OPSET
from medfuse.export.pipeline import ExportRequest, ExportResult, default_timing_cache, run_export
from medfuse.export.tensorrt_build import BatchProfile
from medfuse.runtime.errors import run_cli
from medfuse.runtime.versions import version_option

app = typer.Typer(
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    help="Export a medfuse checkpoint to ONNX (fp32, fp16, int8), a TensorRT engine and a Triton repository.",
)


class Engine(str, Enum):
    auto = "auto"  # build when an NVIDIA GPU and TensorRT are present, else say why and go on
    require = "require"  # no GPU/TensorRT is an error (exit 2)
    skip = "skip"


class RichReporter:
    """Progress spinners and notes on stderr, so stdout holds only the final table."""

    def __init__(self, console: Console):
        self.console = console

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        with self.console.status(text):
            yield
        self.console.print(f"[green]done[/green] {text}", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)  # one line, brackets kept


def summary_table(result: ExportResult, out_dir: Path) -> Table:
    table = Table(title=f"medfuse-export wrote to {out_dir}")
    for column in ("file", "precision", "max abs err", "PSNR dB", "parity"):
        table.add_column(column)
    by_file = {r.file: r for r in result.records}
    for path in result.files:
        rec = by_file.get(path.name)
        parity = rec.parity if rec else None
        if parity:
            psnr = "inf" if parity["psnr"] is None else f"{parity['psnr']:.1f}"
            row = (rec.precision, f"{parity['max_abs']:.2e}", psnr, "pass" if parity["passed"] else "FAIL")
        else:
            row = (rec.precision if rec else "", "", "", "")
        table.add_row(path.name, *row)
    for folder in result.triton:
        table.add_row(f"{folder}/", "triton", "", "", "")
    return table


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A medfuse checkpoint (.pt) from medfuse-train.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifacts folder (created if missing).")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write model.fp16.onnx (fp16 compute, fp32 I/O); the engine is built from it.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write model.int8.onnx for CPUs (needs --calib).")] = False,
    calib: Annotated[Optional[Path], typer.Option(help="Folder of real pairs (CT/ and MRI/ subfolders): int8 calibration and extra parity checks.")] = None,
    calib_pairs: Annotated[int, typer.Option(help="Pairs used to calibrate int8, spread over the folder.")] = 32,
    parity_pairs: Annotated[int, typer.Option(help="Other real pairs compared with PyTorch, besides the phantoms.")] = 8,
    engine: Annotated[Engine, typer.Option(help="TensorRT engine: auto (when a GPU and TensorRT exist), require, skip.")] = Engine.auto,
    batch: Annotated[str, typer.Option(help="Engine profile MIN,OPT,MAX batch; MAX is also Triton's max_batch_size.")] = "1,4,32",
    triton_repo: Annotated[Optional[Path], typer.Option(help="Also write a Triton model repository here.")] = None,
    version_compatible: Annotated[bool, typer.Option("--version-compatible", help="Engine runs on later TensorRT versions and on tensorrt-lean.")] = False,
    exclude_lean_runtime: Annotated[bool, typer.Option("--exclude-lean-runtime", help="With --version-compatible: leave TensorRT's lean runtime out of the plan (smaller; then only tensorrt-lean of this version runs it).")] = False,
    hardware_compat: Annotated[bool, typer.Option("--hardware-compat", help="Engine runs on any Ampere or newer GPU, not only this architecture.")] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).")] = DEFAULT_OPSET,
    timing_cache: Annotated[Optional[Path], typer.Option(help="TensorRT timing cache file, reused across builds.")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for PyTorch and the ONNX Runtime parity runs (default: all cores; int8 calibration keeps ONNX Runtime's own).")] = None,
    version: Annotated[bool, version_option("medfuse-export")] = False,
) -> None:
    """Export CHECKPOINT into ARTIFACTS_DIR and prove each artifact matches PyTorch."""
    request = ExportRequest(
        checkpoint=checkpoint, out_dir=out, fp16=fp16, int8=int8, calib_dir=calib, calib_pairs=calib_pairs,
        parity_pairs=parity_pairs, engine=engine.value, batch=BatchProfile.parse(batch), triton_repo=triton_repo,
        version_compatible=version_compatible, exclude_lean_runtime=exclude_lean_runtime,
        hardware_compat=hardware_compat, opset=opset,
        timing_cache=timing_cache or default_timing_cache(), threads=threads)
    result = run_export(request, RichReporter(Console(stderr=True)))
    Console().print(summary_table(result, out))


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
