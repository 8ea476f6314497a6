"""What the executor adds around the engine: pre/postprocessing per pair, and medfuse-run end to end.

Engine latency alone hides decoding, windowing, letterboxing, encoding and writing; these rows
make that overhead visible next to it.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from medfuse.runtime.preprocess import PreprocessConfig, prepare_pair, to_uint8_image


@dataclass(frozen=True)
class StageRow:
    stage: str  # read | preprocess | postprocess | medfuse-run (per pair) | ...
    ms_per_pair: float  # median over pairs (and repeats) for stages; mean for the end-to-end run
    pairs: int
    note: str

    def to_dict(self) -> dict:
        return asdict(self)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def measure_prepost(files: Sequence[tuple[Path, Path]], cfg: PreprocessConfig, modality: str,
                    limit: int = 8, repeats: int = 3) -> list[StageRow]:
    """Per-pair time of reading both files, prepare_pair, and to_uint8_image + PNG write.

    `files`: (first source, MRI) paths of the benchmark's pairs; the first `limit` are timed.
    PET/SPECT (`modality`): the luma/chroma split and the recolouring are timed too.
    """
    from medfuse.runtime.io import read_image
    from medfuse.runtime.writers import write_png

    files = list(files)[:limit]
    read, pre, post = [], [], []
    with tempfile.TemporaryDirectory(prefix="medfuse-bench-post-") as tmp:
        for _ in range(repeats):
            for a, b in files:
                t0 = time.perf_counter()
                ct, mri = read_image(a), read_image(b)
                t1 = time.perf_counter()
                prepared = prepare_pair(ct, mri, cfg, modality)
                t2 = time.perf_counter()
                # the CT input stands in for a model output: same shape, same work to restore and write
                write_png(Path(tmp) / f"{a.stem}.png", to_uint8_image(prepared.ct, prepared.geometry, prepared.chroma))
                t3 = time.perf_counter()
                read.append(t1 - t0)
                pre.append(t2 - t1)
                post.append(t3 - t2)
    n = len(files)
    return [
        StageRow("read (CT + MRI files)", _median_ms(read), n, "runtime.io.read_image, both images"),
        StageRow("preprocess", _median_ms(pre), n, f"prepare_pair: window/normalise, letterbox to {cfg.input_size}"),
        StageRow("postprocess", _median_ms(post), n, "to_uint8_image (un-letterbox) + PNG write"),
    ]


def _link_pairs(files: Sequence[tuple[Path, Path]], root: Path) -> tuple[Path, Path]:
    """CT/ and MRI/ folders under `root` holding exactly these pairs (links, else copies)."""
    ct_dir, mri_dir = root / "CT", root / "MRI"
    ct_dir.mkdir(parents=True)
    mri_dir.mkdir()
    for a, b in files:
        for src, folder in ((a, ct_dir), (b, mri_dir)):
            try:
                (folder / src.name).symlink_to(src.resolve())
            except OSError:  # no symlinks here (Windows without the privilege)
                shutil.copy2(src, folder / src.name)
    return ct_dir, mri_dir


def measure_end_to_end(files: Sequence[tuple[Path, Path]], artifacts: Path, threads: int | None = None,
                       backend: str = "auto", precision: str = "auto") -> list[StageRow]:
    """One in-process `medfuse-run CT/ MRI/ -o OUT --threads N` over exactly the benchmark's pairs:
    wall time per pair.

    Backend and precision default to what `medfuse-run` itself picks here; the row names them.
    """
    from medfuse.runtime.run import Request, execute

    files = list(files)
    with tempfile.TemporaryDirectory(prefix="medfuse-bench-run-") as tmp:
        ct_dir, mri_dir = _link_pairs(files, Path(tmp) / "in")
        request = Request(ct=ct_dir, mri=mri_dir, output=Path(tmp) / "out", model=artifacts,
                          backend=backend, precision=precision, json_output=True, threads=threads)
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            summary = execute(request)
    seconds, n = summary["seconds"], max(1, summary["counts"]["ok"])
    threads_text = f", threads {summary['threads']}" if summary.get("threads") else ""
    what = f"{summary['backend']} {summary['precision']}{threads_text}, {summary['counts']['ok']} of {len(files)} pairs"
    return [
        StageRow("medfuse-run, fusing (per pair)", seconds["fuse"] / n * 1e3, n,
                 f"{what}; read, preprocess, engine, write, pipelined"),
        StageRow("medfuse-run, total incl. model load (per pair)", seconds["total"] / n * 1e3, n,
                 f"model load once: {seconds['load_model'] * 1e3:.0f} ms"),
    ]
