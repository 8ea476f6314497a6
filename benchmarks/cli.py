"""Console script `medfuse-bench`: latency, parity, quality and the full report.

Each command is a thin wrapper over `suite.run_suite`; the tables it prints are the ones
report.md holds. `parity` exits 1 when any engine is over its tolerance (a release gate).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from medfuse.benchmarks import tables
from medfuse.benchmarks.baselines import BASELINE_NAMES
from medfuse.benchmarks.data import SPLITS, Selection
from medfuse.benchmarks.engines import DEVICES
from medfuse.benchmarks.suite import BenchOptions, SuiteResult, run_suite
from medfuse.runtime.versions import version_option
from medfuse.runtime.errors import MedfuseError, run_cli
from medfuse.train.split import HARVARD_CASE_REGEX

EXIT_PARITY_FAILED = 1
PAIRED_TITLE = "which wins hold pair by pair (95 % bootstrap interval of the mean difference)"

app = typer.Typer(pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False,
                  help="Benchmarks of medfuse: latency, parity with PyTorch, and fusion quality against baselines.")


@app.callback()
def _root(version: Annotated[bool, version_option("medfuse-bench")] = False) -> None:
    """Benchmarks of medfuse: latency, parity with PyTorch, and fusion quality against baselines."""

CkptOpt = Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Checkpoint (.pt): the PyTorch reference.")]
ArtOpt = Annotated[Optional[Path], typer.Option("--artifacts", "-a", help="Artifact folder written by medfuse-export.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Folder with CT/ (or PET/, SPECT/) and MRI/ pairs; "
                                                               "default: generated phantoms.")]
SplitOpt = Annotated[str, typer.Option("--split", help=f"Pairs of --data: {', '.join(SPLITS)} (val/train: the "
                                                       "training run's case-held-out split).")]
# The split options default to the --checkpoint's own training split (so --split val scores the
# cases that model never trained on), else to training's defaults.
ValFracOpt = Annotated[Optional[float], typer.Option("--val-fraction", help="Validation share of the split. Default: "
                                                                         "the checkpoint's training run's, else 0.2.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed of the split. Default: the checkpoint's "
                                                               "training split seed, else 0.")]
CaseRegexOpt = Annotated[Optional[str], typer.Option("--case-regex", help="Case key of a file name ('' = each file "
                                                                          "a case). Default: the checkpoint's, else "
                                                                          "the first 2 digits (Harvard).")]
SPLIT_DEFAULTS = {"val_fraction": 0.2, "seed": 0, "case_regex": HARVARD_CASE_REGEX}
SPLIT_OPTIONS = {"val_fraction": "--val-fraction", "seed": "--seed", "case_regex": "--case-regex"}
CasesOpt = Annotated[Optional[str], typer.Option("--cases", help="Keep only pairs whose name matches this regex.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many pairs, spread evenly.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads per engine "
                                                                            "(default: physical cores).")]
EngineOpt = Annotated[Optional[list[str]], typer.Option("--engine", "-e", help="Only this engine (repeatable), "
                                                                               "e.g. onnxruntime-int8.")]
BatchesOpt = Annotated[str, typer.Option("--batches", help="Comma-separated batch sizes.")]
ItersOpt = Annotated[int, typer.Option("--iters", min=1, help="Timed calls per engine and batch.")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls first (first-call builds included).")]
SsimOpt = Annotated[float, typer.Option("--ssim-data-range", min=1e-6, help="SSIM data_range on the 0-255 scale; "
                                                                            "2 reproduces the CDDFuse tables.")]
BaselinesOpt = Annotated[str, typer.Option("--baselines", help=f"Comma-separated: {', '.join(BASELINE_NAMES)}.")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Also write the records to this JSON file.")]
OverheadOpt = Annotated[bool, typer.Option("--overhead/--no-overhead", help="Pre/postprocessing and medfuse-run rows.")]


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(dict.fromkeys(int(v) for v in text.split(",") if v.strip()))  # once each, in order
    except ValueError:
        raise MedfuseError(f"{what} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise MedfuseError(f"{what} needs positive integers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [n for n in names if n not in BASELINE_NAMES]
    if unknown:
        raise MedfuseError(f"unknown baseline {', '.join(unknown)}; valid: {', '.join(BASELINE_NAMES)}")
    if "wavelet" in names:
        others = ",".join(n for n in names if n != "wavelet")
        _require("pywt", "the wavelet baseline needs PyWavelets", f"--baselines {others}" if others else None)
    return names


def _require(module: str, why: str, instead: str | None = None) -> None:
    """A [bench] dependency checked before the work, not found missing after it."""
    from medfuse.entry_points import missing_modules

    if missing_modules((module,)):
        alternative = f", or leave it out: {instead}" if instead else ""
        raise MedfuseError(f"{why}: pip install 'medfuse[bench]'{alternative}")


def _options(checkpoint, artifacts, data, split, val_fraction, seed, case_regex, cases, limit, device, threads,
             engine, **extra) -> BenchOptions:
    """Every option checked before any model loads or any pair is read."""
    for path, what in ((checkpoint, "checkpoint"), (artifacts, "artifact folder"), (data, "data folder")):
        if path is not None and not path.exists():
            raise MedfuseError(f"{what} not found", path)
    if device not in DEVICES:
        raise MedfuseError(f"--device must be {', '.join(DEVICES)}, got {device!r}")
    if split not in SPLITS:
        raise MedfuseError(f"unknown --split {split!r}; valid: {', '.join(SPLITS)}")
    if data is None and (split != "all" or cases or limit):
        raise MedfuseError("--split, --cases and --limit select pairs of --data; without --data the benchmark "
                           "runs on generated phantom pairs")
    given = {"val_fraction": val_fraction, "seed": seed, "case_regex": case_regex}
    split_settings = _split_settings(given, checkpoint if data is not None and split != "all" else None)
    sel = Selection(split, cases=cases, limit=limit, **split_settings)
    return BenchOptions(checkpoint=checkpoint, artifacts=artifacts, data=data, selection=sel, device=device,
                        threads=threads, engines=tuple(engine or ()), **extra)


def _split_settings(given: dict, checkpoint: Path | None) -> dict:
    """--val-fraction, --seed and --case-regex as given, the rest from the checkpoint's training
    run (said on stderr), else training's defaults."""
    missing = [k for k, v in given.items() if v is None]
    if not missing or checkpoint is None:
        return {k: SPLIT_DEFAULTS[k] if v is None else v for k, v in given.items()}
    from medfuse.train.checkpoint import load_checkpoint

    t = load_checkpoint(checkpoint).get("train_config") or {}
    if t.get("stage") != "finetune":  # a pretraining split (each file a case) is not this data's
        return {k: SPLIT_DEFAULTS[k] if v is None else v for k, v in given.items()}
    trained = {}  # only what the checkpoint records; a key it lacks keeps training's default
    if "val_fraction" in t:
        trained["val_fraction"] = t["val_fraction"]
    if t.get("split_seed") is not None or "seed" in t:
        trained["seed"] = t["split_seed"] if t.get("split_seed") is not None else t["seed"]
    if "case_regex" in t:
        trained["case_regex"] = t["case_regex"] or ""  # None in training: every file is its own case
    out = {k: v if v is not None else trained.get(k, SPLIT_DEFAULTS[k]) for k, v in given.items()}
    taken = [k for k in missing if k in trained]
    if not taken:
        return out
    options = ", ".join(SPLIT_OPTIONS[k] for k in taken)
    typer.echo(f"split: seed {out['seed']}, validation fraction {out['val_fraction']:g}, case regex "
               f"'{out['case_regex']}' ({options} from the checkpoint's training run)", err=True)
    return out


@contextmanager
def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=False) as bar:
        def add(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        yield add


def _run(opts: BenchOptions, sections: tuple[str, ...]) -> SuiteResult:
    with _progress() as add:
        return run_suite(opts, sections, add)


def _print(res: SuiteResult, sections: tuple[str, ...]) -> None:
    from rich.console import Console

    # Piped or captured output gets wide tables rather than names folded to 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(f"data: {res.data}", markup=False)
    if res.skipped:
        console.print(tables.rich_table(tables.skipped_table(res.skipped), "skipped"))
    if "latency" in sections:
        console.print(tables.rich_table(tables.latency_table(res.latency), f"latency ({res.settings['copies']})"))
        if res.overhead:
            console.print(tables.rich_table(tables.stage_table(res.overhead), "pre/postprocessing, medfuse-run"))
    if "parity" in sections:
        console.print(tables.rich_table(tables.parity_table(res.parity), "parity against PyTorch fp32"))
    if "quality" in sections:
        console.print(tables.rich_table(tables.quality_table(res.quality),
                                        f"fusion quality (SSIM data_range {res.settings['ssim_data_range']:g})"))
        if res.wins:
            console.print(tables.rich_table(tables.wins_table(res.wins), "medfuse against each baseline"))
        if res.paired:
            console.print(tables.rich_table(tables.paired_table(res.paired), PAIRED_TITLE))


def _write_json(path: Path | None, res: SuiteResult) -> None:
    if path is None:
        return
    from medfuse.benchmarks.machine import machine_info
    from medfuse.benchmarks.report import generated_now, results_document
    from medfuse.runtime.atomic import atomic_output

    doc = results_document(res, machine_info(), generated_now())
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")


@app.command()
def latency(checkpoint: CkptOpt = None, artifacts: ArtOpt = None, data: DataOpt = None, split: SplitOpt = "all",
            val_fraction: ValFracOpt = None, seed: SeedOpt = None, case_regex: CaseRegexOpt = None,
            cases: CasesOpt = None, limit: LimitOpt = None, device: DeviceOpt = "auto", threads: ThreadsOpt = None,
            engine: EngineOpt = None, batches: BatchesOpt = "1,4,8", iters: ItersOpt = 10, warmup: WarmupOpt = 2,
            overhead: OverheadOpt = True, json_out: JsonOpt = None) -> None:
    """Latency of every engine that runs here, interleaved in one process, per batch size."""
    opts = _options(checkpoint, artifacts, data, split, val_fraction, seed, case_regex, cases, limit, device,
                    threads, engine, batches=_ints(batches, "--batches"), iters=iters, warmup=warmup,
                    overhead=overhead)
    if checkpoint is None and artifacts is None:
        raise MedfuseError("latency needs a model: pass --checkpoint CKPT and/or --artifacts DIR")
    res = _run(opts, ("latency",))
    _print(res, ("latency",))
    _write_json(json_out, res)


@app.command()
def parity(checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint: the PyTorch fp32 "
                                                                               "reference.")],
           artifacts: ArtOpt = None, data: DataOpt = None, split: SplitOpt = "all", val_fraction: ValFracOpt = None,
           seed: SeedOpt = None, case_regex: CaseRegexOpt = None, cases: CasesOpt = None,
           limit: LimitOpt = None, device: DeviceOpt = "auto", threads: ThreadsOpt = None, engine: EngineOpt = None,
           pairs: Annotated[int, typer.Option("--pairs", min=1, help="Pairs compared.")] = 8,
           json_out: JsonOpt = None) -> None:
    """Each engine against PyTorch fp32; exits 1 when any row is over its precision's tolerance."""
    if engine and "pytorch-fp32" not in engine:
        engine = [*engine, "pytorch-fp32"]
    opts = _options(checkpoint, artifacts, data, split, val_fraction, seed, case_regex, cases, limit, device,
                    threads, engine, parity_pairs=pairs)
    res = _run(opts, ("parity",))
    _print(res, ("parity",))
    _write_json(json_out, res)
    if not res.parity_passed:
        failed = ", ".join(r["engine"] for r in res.parity if not r["passed"])
        typer.echo(f"parity FAILED: {failed}", err=True)
        raise typer.Exit(EXIT_PARITY_FAILED)


@app.command()
def quality(data: DataOpt = None, split: SplitOpt = "all", val_fraction: ValFracOpt = None, seed: SeedOpt = None,
            case_regex: CaseRegexOpt = None, cases: CasesOpt = None, limit: LimitOpt = None,
            checkpoint: CkptOpt = None, artifacts: ArtOpt = None, device: DeviceOpt = "auto",
            threads: ThreadsOpt = None, engine: EngineOpt = None, baselines: BaselinesOpt = ",".join(BASELINE_NAMES),
            ssim_data_range: SsimOpt = 255.0, json_out: JsonOpt = None) -> None:
    """Fusion metrics of the classic baselines and of each medfuse engine on the same pairs."""
    opts = _options(checkpoint, artifacts, data, split, val_fraction, seed, case_regex, cases, limit, device,
                    threads, engine, baselines=_names(baselines), ssim_data_range=ssim_data_range)
    res = _run(opts, ("quality",))
    _print(res, ("quality",))
    _write_json(json_out, res)


@app.command()
def report(out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, results.json, PNGs.")],
           checkpoint: CkptOpt = None, artifacts: ArtOpt = None, data: DataOpt = None, split: SplitOpt = "all",
           val_fraction: ValFracOpt = None, seed: SeedOpt = None, case_regex: CaseRegexOpt = None,
           cases: CasesOpt = None, limit: LimitOpt = None, device: DeviceOpt = "auto", threads: ThreadsOpt = None,
           engine: EngineOpt = None, batches: BatchesOpt = "1,4,8", iters: ItersOpt = 5, warmup: WarmupOpt = 1,
           overhead: OverheadOpt = True, baselines: BaselinesOpt = ",".join(BASELINE_NAMES),
           ssim_data_range: SsimOpt = 255.0, pairs: Annotated[int, typer.Option("--pairs", min=1, help="Pairs "
                                                                                "compared for parity.")] = 8,
           examples: Annotated[int, typer.Option("--examples", min=0, help="Pairs in grid.png.")] = 4) -> None:
    """Latency, parity and quality in one run: report.md, results.json and PNG plots in --out."""
    from medfuse.benchmarks.machine import machine_info
    from medfuse.benchmarks.report import check_output_folder, write_report

    check_output_folder(out)  # before minutes of benchmarking, not after
    _require("matplotlib", "the report's plots need matplotlib")
    opts = _options(checkpoint, artifacts, data, split, val_fraction, seed, case_regex, cases, limit, device,
                    threads, engine, batches=_ints(batches, "--batches"), iters=iters, warmup=warmup,
                    overhead=overhead, baselines=_names(baselines), ssim_data_range=ssim_data_range,
                    parity_pairs=pairs, examples=examples)
    sections = ("latency", "quality") + (("parity",) if checkpoint is not None else ())
    res = _run(opts, sections)
    if checkpoint is None:
        res.skipped.append({"name": "parity", "reason": "no --checkpoint: parity compares with PyTorch fp32"})
    written = write_report(out, res, machine_info())
    _print(res, sections)
    typer.echo("wrote " + ", ".join(str(p) for p in written))
    if not res.parity_passed:
        typer.echo("parity FAILED for: " + ", ".join(r["engine"] for r in res.parity if not r["passed"]), err=True)
        raise typer.Exit(EXIT_PARITY_FAILED)


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
