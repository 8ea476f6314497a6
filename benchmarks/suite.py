"""Runs the benchmark sections (latency, parity, quality) on one data set and one set of engines.

Each section returns plain records (lists of dicts with named fields): the same records go into
results.json, report.md and the terminal tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medfuse.benchmarks import latency, parity, quality
from medfuse.benchmarks.baselines import BASELINE_NAMES
from medfuse.benchmarks.data import Pair, Selection, dataset, describe, load_pairs
from medfuse.benchmarks.engines import EngineSet, discover
from medfuse.runtime.metrics import DEFAULT_SSIM_DATA_RANGE
from medfuse.runtime.pairing import spread
from medfuse.runtime.preprocess import PreprocessConfig, prepare_pair

SECTIONS = ("latency", "parity", "quality")
# progress(description, total) -> tick(); the CLI passes a Rich progress bar, tests a no-op
Progress = Callable[[str, int], Callable[[], None]]


def no_progress(description: str, total: int) -> Callable[[], None]:
    return lambda: None


@dataclass(frozen=True)
class BenchOptions:
    checkpoint: Path | None = None  # PyTorch reference (parity needs it)
    artifacts: Path | None = None  # medfuse-export folder: ONNX files, model.plan, manifest.json
    data: Path | None = None  # CT/ (or PET/, SPECT/) + MRI/ pairs; None: phantoms
    selection: Selection = field(default_factory=Selection)
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # intra-op threads on the CPU (default: physical cores)
    engines: tuple[str, ...] = ()  # only these engines (default: all that run here)
    batches: tuple[int, ...] = latency.DEFAULT_BATCHES
    warmup: int = 2
    iters: int = 10
    latency_pairs: int = 4  # distinct pairs cycled through a latency batch
    parity_pairs: int = 8
    overhead: bool = True  # pre/postprocessing and medfuse-run rows beside the engine latency
    ssim_data_range: float = DEFAULT_SSIM_DATA_RANGE
    baselines: tuple[str, ...] = BASELINE_NAMES
    examples: int = 4  # pairs shown in the comparison grid


@dataclass
class SuiteResult:
    data: str = ""
    settings: dict = field(default_factory=dict)
    engines: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    latency: list[dict] = field(default_factory=list)
    overhead: list[dict] = field(default_factory=list)
    parity: list[dict] = field(default_factory=list)
    quality: list[dict] = field(default_factory=list)
    wins: list[dict] = field(default_factory=list)
    paired: list[dict] = field(default_factory=list)  # whether each win holds per pair (paired.py)
    examples: dict = field(default_factory=dict)  # pair -> column -> uint8 image (not in JSON)
    flops_per_image: int | None = None

    @property
    def parity_passed(self) -> bool:
        return all(r["passed"] for r in self.parity)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "examples"}


def _stack(pairs: Sequence[Pair], cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    prepared = [prepare_pair(p.ct, p.mri, cfg, p.modality_pair) for p in pairs]
    return np.stack([p.ct for p in prepared]), np.stack([p.mri for p in prepared])


def _latency(opts: BenchOptions, found: EngineSet, pairs, res: SuiteResult, progress: Progress) -> None:
    ct, mri = _stack(spread(pairs, opts.latency_pairs), found.preprocess)
    tick = progress("latency", latency.ticks_needed(len(opts.batches), len(found.engines), opts.iters))
    res.latency = [r.to_dict() for r in latency.measure(found, ct, mri, opts.batches, opts.warmup, opts.iters, tick)]
    if not opts.overhead:
        return
    from medfuse.benchmarks.overhead import measure_end_to_end, measure_prepost

    if any(p.slice_index is not None for p in pairs):
        # The rows time reading and fusing 2D pair files; a volume's file holds every slice.
        res.skipped.append({"name": "pre/postprocessing, medfuse-run", "reason": "the data holds volumes: these rows "
                            "time 2D pair files (run medfuse-run on a volume pair to time it)"})
        return
    tick = progress("pre/postprocessing, medfuse-run", 2)
    files = [p.files for p in pairs]  # the selected pairs only, as every other row
    res.overhead = [r.to_dict() for r in measure_prepost(files, found.preprocess, pairs[0].modality_pair)]
    tick()
    if opts.artifacts is not None:
        res.overhead += [r.to_dict() for r in measure_end_to_end(files, opts.artifacts, found.threads)]
    else:
        res.skipped.append({"name": "medfuse-run end to end", "reason": "needs --artifacts (medfuse-run runs them)"})
    tick()


def _parity(opts: BenchOptions, found: EngineSet, pairs, res: SuiteResult, progress: Progress) -> None:
    ct, mri = _stack(spread(pairs, opts.parity_pairs), found.preprocess)
    tick = progress("parity", len(found.engines))
    res.parity = [r.to_dict() for r in parity.measure(found, ct, mri, tick)]


def _quality(opts: BenchOptions, found: EngineSet, pairs, res: SuiteResult, progress: Progress) -> None:
    tick = progress("quality", len(opts.baselines) + len(found.engines))
    out = quality.evaluate(pairs, found, opts.baselines, opts.ssim_data_range, opts.examples, tick)
    res.quality = [r.to_dict() for r in out.rows]
    res.wins = quality.wins(out.rows)
    res.paired = out.paired()
    res.examples = out.examples


def model_identity(checkpoint: Path | None, artifacts: Path | None) -> dict:
    """Which model the figures are of: file paths and checksums, and whether the artifacts were
    exported from this checkpoint (their manifest.json names its sha256)."""
    from medfuse.runtime.checksum import sha256_file
    from medfuse.runtime.model_dir import open_model_dir

    out: dict = {}
    if checkpoint is not None:
        out |= {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint)}
    if artifacts is not None:
        manifest = open_model_dir(artifacts).manifest or {}
        out |= {"artifacts": str(artifacts), "artifacts_from_checkpoint_sha256": manifest.get("checkpoint_sha256")}
    return out


def run_suite(opts: BenchOptions, sections: Sequence[str] = SECTIONS, progress: Progress = no_progress) -> SuiteResult:
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}")
    needs_model = bool(set(sections) & {"latency", "parity"}) or opts.checkpoint or opts.artifacts
    found = discover(opts.checkpoint, opts.artifacts, opts.device, opts.threads, opts.engines) if needs_model else EngineSet()
    res = SuiteResult(flops_per_image=found.flops_per_image)
    res.settings = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in opts.__dict__.items() if k != "selection"},
                    **{f"selection_{k}": v for k, v in opts.selection.__dict__.items()},
                    "input_size": found.preprocess.input_size, "threads": found.threads,
                    "copies": latency.COPIES_NOTE, "model": model_identity(opts.checkpoint, opts.artifacts)}
    res.engines = [{"name": e.name, "precision": e.precision, "device": e.device} for e in found.engines]
    res.skipped = [{"name": s.name, "reason": s.reason} for s in found.skipped]
    try:
        with dataset(opts.data) as (folder, real):
            sel = opts.selection if real else Selection()
            pairs = load_pairs(folder, sel, found.preprocess)
            res.data = describe(pairs, folder, real, sel)
            if "latency" in sections:
                _latency(opts, found, pairs, res, progress)
            if "parity" in sections:
                _parity(opts, found, pairs, res, progress)
            if "quality" in sections:
                _quality(opts, found, pairs, res, progress)
    finally:
        found.close()
    return res
