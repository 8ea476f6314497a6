"""What medfuse-run adds around the engine, on the CPU with ONNX Runtime.

- Per pair (batch 1): preprocessing + postprocessing time against pure inference time
  (target: at most +15%), also with decoding and PNG encoding counted.
- Folder throughput against the engine's own throughput at the same batch size on the same
  prepared inputs (target: at least 90%), and a sequential loop (no overlap) for contrast.
  The engine's own figure is the better of a spinning and a non-spinning ONNX Runtime session;
  the folder runs as medfuse-run runs it (non-spinning, so its I/O threads get the cores).
- Start-up: `medfuse-run --help`, and the wall time of a whole `medfuse-run` to the first fused PNG.

Medians over pairs; throughputs are the best of `--repeats` runs (the machine may be shared).
Run: python -m medfuse.benchmarks.runtime_overhead --model DIR [--pairs DIR] [--json PATH]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from medfuse.runtime.errors import run_cli

app = typer.Typer(pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False)
HARVARD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "harvard-ct-mri" / "train"


def _timed(fn: Callable, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def find_pairs(pairs: Path | None, n: int, work: Path):
    """Pair jobs from a CT/ MRI/ folder (Harvard when present), else freshly written phantoms."""
    from medfuse.runtime.inputs import match_folders

    if pairs is None and HARVARD.is_dir():
        pairs = HARVARD
    source = str(pairs) if pairs else "phantoms (256x256 PNG)"
    if pairs is None:
        from medfuse.runtime.phantom import write_phantom_dataset

        pairs = write_phantom_dataset(work / "phantoms", n_cases=max(1, -(-n // 8)), slices_per_case=8, size=256)
    jobs = match_folders(pairs / "CT", pairs / "MRI", work / "out").jobs[:n]
    return jobs, source


def per_pair(fuser, jobs, work: Path) -> dict:
    """Stage times of one pair at a time, batch 1."""
    from medfuse.runtime import io
    from medfuse.runtime.preprocess import to_uint8_image

    stages: dict[str, list[float]] = {k: [] for k in ("decode", "preprocess", "inference", "postprocess", "encode")}
    for i, job in enumerate([jobs[0], jobs[0], *jobs]):  # two warm-up runs
        (ct, mri), t_decode = _timed(lambda: (io.read_image(job.ct), io.read_image(job.mri)))
        prepared, t_pre = _timed(fuser.prepare, ct, mri)
        fused, t_inf = _timed(fuser.run, [prepared])
        rgb, t_post = _timed(to_uint8_image, fused[0], prepared.geometry)
        _, t_enc = _timed(io.write_png, work / "pair.png", rgb)
        if i >= 2:
            for key, value in zip(stages, (t_decode, t_pre, t_inf, t_post, t_enc)):
                stages[key].append(value)
    ms = {k: _median_ms(v) for k, v in stages.items()}
    ms["pre_post_overhead_pct"] = round(100 * (ms["preprocess"] + ms["postprocess"]) / ms["inference"], 2)
    ms["with_io_overhead_pct"] = round(100 * (ms["decode"] + ms["preprocess"] + ms["postprocess"] + ms["encode"])
                                       / ms["inference"], 2)
    return ms


def _engine_only(fuser, prepared) -> float:
    _, seconds = _timed(fuser.run, prepared)
    return len(prepared) / seconds


def _sequential(fuser, jobs) -> float:
    """The same work without overlap: load a batch, run it, write it, then the next."""
    from medfuse.runtime.fuse import PairOptions, PairWork

    work = PairWork(fuser, PairOptions())
    start = time.perf_counter()
    for i in range(0, len(jobs), fuser.batch_size):
        batch = jobs[i:i + fuser.batch_size]
        loaded = [work.load(job) for job in batch]
        fused = fuser.run([prepared for _, prepared in loaded])
        for job, (state, _), result in zip(batch, loaded, fused):
            work.save(job, state, result)
    return len(jobs) / (time.perf_counter() - start)


def _folder(fuser, jobs, workers: int | None) -> float:
    from medfuse.runtime.fuse import PairOptions, fuse_folder

    outcomes, seconds = _timed(fuse_folder, fuser, jobs, PairOptions(), workers)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"benchmark pair failed: {failed[0].name}: {failed[0].error}")
    return len(jobs) / seconds


def throughput(spinning, quiet, jobs, repeats: int, workers: int | None) -> dict:
    """Pairs/s of the engine alone (best of its spinning and non-spinning sessions), of the folder
    pipeline as medfuse-run runs it (non-spinning session), and of a loop without overlap."""
    from medfuse.runtime.fuse import PairOptions, PairWork

    work = PairWork(quiet, PairOptions())
    prepared = [work.load(job)[1] for job in jobs]
    for fuser in (spinning, quiet):
        fuser.run(prepared[: fuser.batch_size])  # warm-up
    best = {"engine_spinning": 0.0, "engine_quiet": 0.0, "folder": 0.0, "sequential": 0.0}
    for _ in range(repeats):  # interleaved, so a busy spell on a shared machine hits all of them
        best["engine_spinning"] = max(best["engine_spinning"], _engine_only(spinning, prepared))
        best["engine_quiet"] = max(best["engine_quiet"], _engine_only(quiet, prepared))
        best["folder"] = max(best["folder"], _folder(quiet, jobs, workers))
        best["sequential"] = max(best["sequential"], _sequential(quiet, jobs))
    engine = max(best["engine_spinning"], best["engine_quiet"])
    out = {f"{k}_pairs_per_s": round(v, 3) for k, v in best.items()}
    out["folder_vs_engine_pct"] = round(100 * best["folder"] / engine, 1)
    out["sequential_vs_engine_pct"] = round(100 * best["sequential"] / engine, 1)
    return out


def _medfuse_run() -> list[str]:
    script = Path(sys.executable).with_name("medfuse-run")
    return [str(script)] if script.exists() else [shutil.which("medfuse-run") or "medfuse-run"]


def startup(model: Path, job, work: Path, repeats: int = 5) -> dict:
    cmd = _medfuse_run()
    helps = [_timed(lambda: subprocess.run([*cmd, "--help"], capture_output=True, check=True))[1]
             for _ in range(repeats)]
    first = []
    for i in range(max(1, repeats // 2)):
        args = [*cmd, str(job.ct), str(job.mri), "-o", str(work / f"first{i}.png"), "--model", str(model)]
        done, seconds = _timed(lambda: subprocess.run(args, capture_output=True, text=True))
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        first.append(seconds)
    return {"help_ms": _median_ms(helps), "first_image_ms": _median_ms(first)}


@app.command()
def main_command(
    model: Annotated[Optional[Path], typer.Option(help="Model folder (default: as medfuse-run finds it).")] = None,
    pairs: Annotated[Optional[Path], typer.Option(
        help="Folder with CT/ and MRI/ (default: Harvard, else phantoms).")] = None,
    n: Annotated[int, typer.Option(help="Pairs to time.")] = 16,
    batch_size: Annotated[int, typer.Option(help="Batch size for the throughput comparison.")] = 4,
    precision: Annotated[str, typer.Option(help="ONNX variant: fp32, fp16 or int8.")] = "fp32",
    repeats: Annotated[int, typer.Option(help="Throughput runs; the best counts.")] = 3,
    workers: Annotated[Optional[int], typer.Option(help="I/O threads (default as medfuse-run).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    """Time medfuse-run's overhead around ONNX Runtime on this CPU."""
    from medfuse.runtime.backends.onnxruntime_backend import OnnxRuntimeRunner, physical_cores
    from medfuse.runtime.fuse import Fuser
    from medfuse.runtime.model_dir import open_model_dir, preprocess_config

    folder = open_model_dir(model)
    spinning = OnnxRuntimeRunner(folder.onnx[precision], precision, "cpu", spin=True)
    quiet = OnnxRuntimeRunner(folder.onnx[precision], precision, "cpu", spin=False)  # as medfuse-run on folders
    with tempfile.TemporaryDirectory() as tmp, spinning, quiet:
        work = Path(tmp)
        jobs, source = find_pairs(pairs, n, work)
        cfg = preprocess_config(spinning.metadata, folder, spinning.path)
        import onnxruntime

        report = {
            "model": str(spinning.path), "precision": precision, "input_size": cfg.input_size, "pairs": source,
            "n": len(jobs), "batch_size": batch_size, "onnxruntime": onnxruntime.__version__,
            "intra_op_threads": spinning.threads, "physical_cores": physical_cores(),
            "per_pair_ms": per_pair(Fuser(spinning, cfg, 1), jobs, work),
            "throughput": throughput(Fuser(spinning, cfg, batch_size), Fuser(quiet, cfg, batch_size), jobs,
                                     repeats, workers),
            "startup": startup(folder.root if model is None else model, jobs[0], work),
        }
    text = json.dumps(report, indent=2)
    print(text)
    if json_out:
        from medfuse.runtime.atomic import atomic_output

        with atomic_output(json_out) as tmp:  # never a half-written report
            tmp.write_text(text + "\n")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
