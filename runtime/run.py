"""What `medfuse-run` does, as a library call: `execute(Request) -> summary dict`.

Order matters for the user: cheap checks first (inputs exist, outputs not in the way), then the
model is found and loaded, then the work runs. Messages go to stderr; with `json_output` the
summary is printed on stdout as one JSON document.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from medfuse.runtime import inputs
from medfuse.runtime.errors import MedfuseError


@dataclass(frozen=True)
class Request:
    ct: Path
    mri: Path
    output: Path
    model: Path | None = None
    backend: str = "auto"
    precision: str = "auto"
    batch_size: int = 4
    window: tuple[float, float] | None = None
    clahe: bool | None = None
    slice_index: int | None = None
    side_by_side: Path | None = None
    metrics: bool = False
    json_output: bool = False
    overwrite: bool = False
    workers: int | None = None
    threads: int | None = None  # ONNX Runtime intra-op threads on the CPU (default: physical cores)
    series_number: int | None = None  # DICOM outputs' SeriesNumber (default 1000)
    series_description: str | None = None  # DICOM outputs' SeriesDescription (default "medfuse <PAIR> fusion")


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _plan(req: Request) -> tuple[str, inputs.Matching | None]:
    """Mode and (for folders) the matched pairs; refuses outputs in the way before any model loads."""
    mode = inputs.detect_mode(req.ct, req.mri, req.output)
    if req.slice_index is not None and mode != "pair":
        raise MedfuseError("--slice picks one slice for a 2D output; name a .png or .dcm output to use it")
    _check_series_label(req, mode)
    inputs.refuse_unsafe_outputs(mode, req.ct, req.mri, req.output, req.side_by_side)
    matching = None
    targets = [req.output]
    if mode == "folder":
        matching = inputs.match_folders(req.ct, req.mri, req.output)
        targets = [job.output for job in matching.jobs]
        if req.side_by_side is not None:
            targets += [req.side_by_side / f"{job.name}.png" for job in matching.jobs]
    elif req.side_by_side is not None:
        targets.append(req.side_by_side)
    inputs.refuse_existing(targets, req.overwrite)
    inputs.refuse_unwritable(targets)
    return mode, matching


def _series_label(req: Request):
    """The DICOM outputs' series number and description (validated), or None for medfuse's own."""
    if req.series_number is None and req.series_description is None:
        return None
    from medfuse.runtime.dicom_write import SeriesLabel

    number = 1000 if req.series_number is None else req.series_number
    return SeriesLabel(number, req.series_description)


def _check_series_label(req: Request, mode: str) -> None:
    if _series_label(req) is None:
        return
    to_dicom = {"pair": req.output.suffix.lower() == ".dcm", "volume": not inputs.is_nifti(req.output)}
    if not to_dicom.get(mode, False):  # folders of pairs are written as PNG
        raise MedfuseError("--series-number and --series-description label DICOM outputs: name a .dcm output, or "
                           "an output folder for two DICOM series")


def _load(req: Request, mode: str, say):
    """The model folder's active runner, with its choice, preprocessing and modality pair (api.LoadedModel)."""
    from medfuse.runtime.api import load_model

    # pipelined modes share the cores with decoding and writing: no spinning
    return load_model(req.model, req.backend, req.precision, threads=req.threads, window=req.window,
                      clahe=req.clahe, spin=mode == "pair", say=say, label="--model")


def execute(req: Request) -> dict:
    console = _console()

    def say(text: str) -> None:  # messages hold paths and pip extras ('medfuse[gpu]'): no markup
        console.print(text, markup=False)

    started = time.perf_counter()
    mode, matching = _plan(req)
    model = _load(req, mode, say)
    loaded = time.perf_counter()
    try:
        outcomes = _work(req, mode, matching, model, console)
    finally:
        model.runner.close()
    done = time.perf_counter()
    summary = _summary(req, mode, matching, model, outcomes,
                       {"load_model": loaded - started, "fuse": done - loaded, "total": done - started})
    _report(summary, console, req.json_output)
    return summary


def _work(req: Request, mode: str, matching, model, console) -> list:
    from medfuse.runtime.fuse import Fuser, PairOptions, fuse_folder, fuse_pair, fuse_volume, fuse_volume_jobs

    fuser = Fuser(model.runner, model.preprocess, req.batch_size, model.modality_pair)
    options = PairOptions(req.slice_index, req.side_by_side, req.metrics, _series_label(req))
    if mode == "pair":
        job = inputs.PairJob(req.output.stem, req.ct, req.mri, req.output)
        return [fuse_pair(fuser, job, options)]
    from medfuse.runtime.cli_support import progress_bar

    if mode == "folder":
        volumes = [job for job in matching.jobs if inputs.is_nifti(job.output)]
        images = [job for job in matching.jobs if not inputs.is_nifti(job.output)]
        outcomes = []
        if images:
            with progress_bar(console, "fusing pairs", len(images)) as (advance, _):
                outcomes += fuse_folder(fuser, images, options, req.workers, advance)
        if volumes:
            with progress_bar(console, "fusing volumes", len(volumes)) as (advance, _):
                outcomes += fuse_volume_jobs(fuser, volumes, options, req.workers, advance)
        return outcomes
    with progress_bar(console, "fusing slices", None) as (advance, set_total):
        return [fuse_volume(fuser, req.ct, req.mri, req.output, options, req.workers, advance, set_total)]


def _summary(req, mode, matching, model, outcomes, seconds) -> dict:
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    choice = model.choice
    summary = {
        "mode": mode,
        "model": str(model.folder.root),
        "backend": choice.backend,
        "precision": choice.precision,
        "artifact": choice.artifact,
        "reason": choice.reason,
        "modality_pair": model.modality_pair,
        "threads": getattr(model.runner, "threads", None),  # ONNX Runtime's intra-op threads; TensorRT has none
        "preprocess": model.preprocess.to_dict(),
        "counts": {"total": len(outcomes), "ok": len(ok), "failed": len(failed)},
        "outputs": [o.to_dict() for o in ok],
        "failures": [o.to_dict() for o in failed],
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
    }
    if matching is not None:
        summary["unpaired"] = [str(p) for p in matching.unpaired]
    if mode == "folder" and seconds["fuse"] > 0:
        summary["pairs_per_second"] = round(len(ok) / seconds["fuse"], 3)
    return summary


def _report(summary: dict, console, json_output: bool) -> None:
    from medfuse.runtime.cli_support import print_summary

    if json_output:
        from medfuse.runtime.json_safe import json_safe

        # a flat image's PSNR is infinite: null, since strict JSON parsers refuse Infinity
        sys.stdout.write(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    print_summary(summary, console)
