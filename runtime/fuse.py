"""Fusion over a runner: one pair, a folder of pairs, or a volume slice by slice.

All three go through `run_pipeline`: a small thread pool decodes and preprocesses the next
batches and encodes and writes the finished ones while the engine runs the current batch
(ONNX Runtime and TensorRT release the GIL), so the engine does not wait on the disk.
A job that fails is recorded and skipped; the others go on.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.runtime.backends.base import Runner
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.image import MedicalImage
from medfuse.runtime.inputs import PairJob, is_nifti
from medfuse.runtime.modality import is_functional
from medfuse.runtime.preprocess import PreparedPair, PreprocessConfig, check_volume_pair, prepare_pair, to_uint8_image
from medfuse.runtime.writers import dicom_affine

if TYPE_CHECKING:
    from medfuse.runtime.dicom_write import SeriesLabel  # pydicom is imported when a DICOM is written


def default_workers() -> int:
    return max(2, min(4, os.cpu_count() or 2))


@dataclass
class Fuser:
    """A runner and the preprocessing its model was trained with."""

    runner: Runner
    cfg: PreprocessConfig
    batch_size: int = 4
    modality_pair: str = "ct-mri"  # pet-mri/spect-mri: `ct` is a functional image whose colours are kept

    def prepare(self, ct: MedicalImage, mri: MedicalImage) -> PreparedPair:
        return prepare_pair(ct, mri, self.cfg, self.modality_pair)

    def run(self, prepared: Sequence[PreparedPair]) -> np.ndarray:
        """Fused [N, 3, S, S] float32 for prepared pairs, in engine-sized batches."""
        step = min(self.batch_size, self.runner.max_batch or self.batch_size)
        outs = []
        for i in range(0, len(prepared), step):
            chunk = prepared[i:i + step]
            feeds = {"ct": np.stack([p.ct for p in chunk]), "mri": np.stack([p.mri for p in chunk])}
            outs.append(self.runner.infer(feeds)["fused"])
        fused = np.concatenate(outs)
        if not np.isfinite(fused).all():  # would be written as black without a word
            raise MedfuseError("the model's output has NaN or infinite values: the model file may be damaged or "
                               "the inputs far outside what it was trained on", self.runner.path)
        return fused


@dataclass
class Outcome:
    """What happened to one job (a pair, or a whole volume)."""

    name: str
    output: Path | None = None
    error: str | None = None
    metrics: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        out = {"name": self.name, "ok": self.ok, "output": str(self.output) if self.output else None}
        if self.error:
            out["error"] = self.error
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return {**out, **self.extra}


def error_text(err: BaseException) -> str:
    """A user error as its sentence; anything else with its type, so a bug is recognisable."""
    return str(err) if isinstance(err, MedfuseError) else f"{type(err).__name__}: {err}"


# ------------------------------------------------------------------------------ the pipeline
def run_pipeline(fuser: Fuser, jobs: Iterable, load: Callable[[Any], tuple[Any, PreparedPair]],
                 save: Callable[[Any, Any, np.ndarray], Outcome], fail: Callable[[Any, BaseException], Outcome],
                 workers: int | None = None, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """load(job) -> (state, prepared) and save(job, state, fused[3,S,S]) -> Outcome run in the pool;
    inference runs here, one batch at a time. Outcomes come back in job order."""
    batch = max(1, fuser.batch_size)
    ahead, max_writes = 2 * batch, 2 * batch  # bounds memory: a few batches in flight either side
    pending, loads, writes = iter(jobs), deque(), deque()
    outcomes: dict[int, Outcome] = {}
    order: list[int] = []

    def finish(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        if on_done:
            on_done(outcome)

    pool = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="medfuse-io")

    def top_up() -> None:
        while len(loads) < ahead:
            job = next(pending, None)
            if job is None:
                return
            order.append(len(order))
            loads.append((order[-1], job, pool.submit(load, job)))

    try:
        top_up()
        while loads:
            ready = []
            while loads and len(ready) < batch:
                index, job, future = loads.popleft()
                top_up()
                try:
                    ready.append((index, job, *future.result()))
                except Exception as err:
                    finish(index, fail(job, err))
            if not ready:
                continue
            try:
                fused = fuser.run([prepared for *_, prepared in ready])
            except Exception as err:  # a batch the engine refuses fails its own pairs only
                for index, job, *_ in ready:
                    finish(index, fail(job, err))
                continue
            for (index, job, state, _), result in zip(ready, fused):
                writes.append((index, job, pool.submit(save, job, state, result)))
            while len(writes) > max_writes:
                _collect(writes.popleft(), fail, finish)
        while writes:
            _collect(writes.popleft(), fail, finish)
    finally:
        # Ctrl-C or an engine crash: drop the queued loads and writes instead of finishing them.
        pool.shutdown(wait=True, cancel_futures=True)
    return [outcomes[i] for i in order]


def _collect(item: tuple[int, Any, Future], fail, finish) -> None:
    index, job, future = item
    try:
        finish(index, future.result())
    except Exception as err:
        finish(index, fail(job, err))


# ------------------------------------------------------------------------------ pairs
@dataclass(frozen=True)
class PairOptions:
    slice_index: int | None = None  # slice of a NIfTI file or DICOM series given as a pair
    side_by_side: Path | None = None  # CT | MRI | fused figure: a file (one pair) or a folder (many)
    metrics: bool = False
    series: SeriesLabel | None = None  # SeriesNumber/Description of DICOM outputs (None: medfuse's)


def fused_image(prepared: PreparedPair, fused: np.ndarray) -> np.ndarray:
    """The network's [3, S, S] output as uint8 RGB at the original size (a functional pair's colours restored)."""
    return to_uint8_image(fused, prepared.geometry, prepared.chroma)


def panels(prepared: PreparedPair) -> tuple[np.ndarray, np.ndarray]:
    """CT (or the functional image, in its colours) and MRI as the model saw them, uint8 RGB at the original size."""
    ct = to_uint8_image(prepared.ct, prepared.geometry, prepared.chroma)
    mri = to_uint8_image(prepared.mri, prepared.geometry)
    return ct, mri


def side_by_side(prepared: PreparedPair, fused_rgb: np.ndarray, gap: int = 4) -> np.ndarray:
    ct, mri = panels(prepared)
    sep = np.full((fused_rgb.shape[0], gap, 3), 255, np.uint8)
    return np.hstack([ct, sep, mri, sep, fused_rgb])


def pair_metrics(prepared: PreparedPair, fused_rgb: np.ndarray, fused: np.ndarray | None = None,
                 ct: MedicalImage | None = None) -> dict[str, float]:
    """Fusion metrics; a functional pair's on the fused luma (`fused`, before colouring moves it at
    the RGB cube's edge, as medfuse-bench scores it) plus ChromaErr against the source's colours;
    a CT-MRI pair's plus CTDim (how much CT's bone is darkened; `ct`, the 2D CT read, gives its HU)."""
    from medfuse.runtime.metrics import CT_DIM_METRIC, ct_dimming, fusion_metrics  # numpy+OpenCV; only --metrics pays for it

    ct_panel, mri_panel = panels(prepared)
    scored = fused_rgb
    if prepared.chroma is not None and fused is not None:
        from medfuse.runtime.color import luma_of_channels

        scored = to_uint8_image(luma_of_channels(fused)[None], prepared.geometry)
    out = fusion_metrics(scored, ct_panel, mri_panel)
    if prepared.chroma is not None:
        from medfuse.runtime.color import CHROMA_METRIC, chroma_error

        out[CHROMA_METRIC] = chroma_error(fused_rgb, ct_panel)
    else:
        out[CT_DIM_METRIC] = ct_dimming(scored, ct_panel, ct.pixels if ct is not None and ct.is_hu else None)
    return {k: round(float(v), 4) for k, v in out.items()}


def write_fused_image(path: Path, rgb: np.ndarray, ct: MedicalImage, mri: MedicalImage,
                      modality_pair: str = "ct-mri", series: SeriesLabel | None = None) -> None:
    from medfuse.runtime import io

    if path.suffix.lower() == ".dcm":
        io.write_dicom_secondary_capture(path, rgb, ct, extra_sources=[mri], modality_pair=modality_pair,
                                         series_label=series)
    else:
        io.write_png(path, rgb)


def write_together(writes: list[tuple[Path, Callable[[Path], None]]]) -> None:
    """Write each (path, writer) in turn; when one fails, remove the ones this call wrote, so a job
    never ends half done (a fused image without its figure, or the reverse)."""
    from medfuse.runtime.atomic import discard

    done: list[Path] = []
    try:
        for path, write in writes:
            write(path)
            done.append(path)
    except BaseException:
        for path in done:
            discard(path)
        raise


class PairWork:
    """load/save/fail of pair jobs (PairJob) for run_pipeline."""

    def __init__(self, fuser: Fuser, options: PairOptions, side_dir: Path | None = None):
        self.fuser, self.options, self.side_dir = fuser, options, side_dir

    def load(self, job: PairJob) -> tuple[tuple, PreparedPair]:
        from medfuse.runtime import io

        ct = io.read_image(job.ct, slice_index=self.options.slice_index)
        mri = io.read_image(job.mri, slice_index=self.options.slice_index)
        prepared = self.fuser.prepare(ct, mri)
        return (ct, mri, prepared), prepared

    def save(self, job: PairJob, state: tuple, fused: np.ndarray) -> Outcome:
        from medfuse.runtime import io

        ct, mri, prepared = state
        rgb = fused_image(prepared, fused)
        outcome = Outcome(job.name, job.output)
        pair = self.fuser.modality_pair
        writes = [(job.output, lambda path: write_fused_image(path, rgb, ct, mri, pair, self.options.series))]
        side = self._side_path(job)
        if side is not None:
            writes.append((side, lambda path: io.write_png(path, side_by_side(prepared, rgb))))
            outcome.extra["side_by_side"] = str(side)
        write_together(writes)
        if self.options.metrics:
            outcome.metrics = pair_metrics(prepared, rgb, fused, ct)
        return outcome

    def fail(self, job: PairJob, err: BaseException) -> Outcome:
        return Outcome(job.name, None, error_text(err))

    def _side_path(self, job: PairJob) -> Path | None:
        if self.side_dir is not None:
            return self.side_dir / f"{job.name}.png"
        return self.options.side_by_side


def fuse_pair(fuser: Fuser, job: PairJob, options: PairOptions = PairOptions()) -> Outcome:
    """One pair -> one fused image; a failure is the command's error."""
    work = PairWork(fuser, options)
    (outcome,) = run_pipeline(fuser, [job], work.load, work.save, work.fail, workers=1)
    if not outcome.ok:
        raise MedfuseError(outcome.error)
    return outcome


def fuse_folder(fuser: Fuser, jobs: Sequence[PairJob], options: PairOptions = PairOptions(),
                workers: int | None = None, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Many pairs; failures are recorded in their Outcome, never raised."""
    work = PairWork(fuser, options, side_dir=options.side_by_side)
    return run_pipeline(fuser, jobs, work.load, work.save, work.fail, workers, on_done)


def fuse_volume_jobs(fuser: Fuser, jobs: Sequence[PairJob], options: PairOptions = PairOptions(),
                     workers: int | None = None, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """The volume pairs of a folder (NIfTI in, NIfTI out), one after the other; like fuse_folder,
    a failure is recorded in its Outcome and the others go on."""
    outcomes = []
    for job in jobs:
        side = None if options.side_by_side is None else options.side_by_side / f"{job.name}.png"
        try:
            outcome = fuse_volume(fuser, job.ct, job.mri, job.output, replace(options, side_by_side=side), workers)
            outcome.name = job.name
        except Exception as err:  # noqa: BLE001 (recorded: the folder's other volumes still run)
            outcome = Outcome(job.name, None, error_text(err))
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes


# ------------------------------------------------------------------------------ volumes
class VolumeWork:
    """load/save/fail of slice indices of a volume pair for run_pipeline."""

    def __init__(self, fuser: Fuser, ct: MedicalImage, mri: MedicalImage):
        check_volume_pair(ct, mri)
        if is_functional(fuser.modality_pair):
            from medfuse.runtime.functional import with_volume_range

            ct = with_volume_range(ct)  # one colour scale for the whole PET/SPECT volume
        self.fuser, self.ct, self.mri = fuser, ct, mri
        self.fused = np.zeros((ct.depth, *ct.height_width, 3), np.uint8)
        self.prepared: dict[int, PreparedPair] = {}
        self.keep = {ct.depth // 2}  # the slice shown by --side-by-side and scored by --metrics

    def load(self, index: int) -> tuple[PreparedPair, PreparedPair]:
        prepared = self.fuser.prepare(self.ct.slice(index), self.mri.slice(index))
        return prepared, prepared

    def save(self, index: int, prepared: PreparedPair, fused: np.ndarray) -> Outcome:
        self.fused[index] = fused_image(prepared, fused)
        if index in self.keep:
            self.prepared[index] = prepared
        return Outcome(f"slice {index}")

    def fail(self, index: int, err: BaseException) -> Outcome:
        return Outcome(f"slice {index}", None, error_text(err))


def write_volume(path: Path, fused: np.ndarray, ct: MedicalImage, mri: MedicalImage,
                 modality_pair: str = "ct-mri", series: SeriesLabel | None = None) -> None:
    from medfuse.runtime import io

    if is_nifti(path):
        io.write_nifti(path, fused, ct)
    else:
        io.write_dicom_series(path, fused, ct, extra_sources=[mri], modality_pair=modality_pair, series_label=series)


def fuse_volume_images(fuser: Fuser, ct: MedicalImage, mri: MedicalImage, workers: int | None = None,
                       on_done: Callable[[Outcome], None] | None = None,
                       on_start: Callable[[int], None] | None = None) -> VolumeWork:
    """Two (D, H, W) volumes in memory, slice by slice; the fused slices are in `.fused`."""
    work = VolumeWork(fuser, ct, mri)
    if on_start is not None:
        on_start(ct.depth)
    slices = run_pipeline(fuser, range(ct.depth), work.load, work.save, work.fail, workers, on_done)
    failed = [s for s in slices if not s.ok]
    if failed:
        raise MedfuseError(f"{len(failed)} of {ct.depth} slices failed, first {failed[0].name}: {failed[0].error}")
    return work


def fuse_volume(fuser: Fuser, ct_path: Path, mri_path: Path, out: Path, options: PairOptions = PairOptions(),
                workers: int | None = None, on_done: Callable[[Outcome], None] | None = None,
                on_start: Callable[[int], None] | None = None) -> Outcome:
    """Two volumes (3D NIfTI or DICOM series) -> a fused NIfTI (source affine) or DICOM series."""
    from medfuse.runtime import io

    ct, mri = io.read_volume(ct_path), io.read_volume(mri_path)
    if is_nifti(out):
        dicom_affine(ct)  # slices no NIfTI affine places are refused before the fusing, not after
    started = time.perf_counter()
    work = fuse_volume_images(fuser, ct, mri, workers, on_done, on_start)
    outcome = Outcome(f"{ct_path.name} + {mri_path.name}", out,
                      extra={"slices": ct.depth, "seconds": round(time.perf_counter() - started, 3)})
    middle = min(work.keep)
    writes = [(out, lambda path: write_volume(path, work.fused, ct, mri, fuser.modality_pair, options.series))]
    if options.side_by_side is not None:
        figure = side_by_side(work.prepared[middle], work.fused[middle])
        writes.append((options.side_by_side, lambda path: io.write_png(path, figure)))
        outcome.extra["side_by_side"] = str(options.side_by_side)
    write_together(writes)
    if options.metrics:
        outcome.metrics = pair_metrics(work.prepared[middle], work.fused[middle], ct=ct.slice(middle))
        outcome.extra["metrics_slice"] = middle
    return outcome
