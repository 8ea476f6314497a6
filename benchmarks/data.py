"""The image pairs a benchmark runs on: a folder of real pairs, or generated phantoms.

A data folder holds `CT/` (or a functional `PET/` / `SPECT/` folder of pseudo-colour images) and
`MRI/`, with one file name per registered pair (the Harvard layout). Every pair carries, beside
the images as read, its two 8-bit gray references: what the metrics compare a fusion with and
what the classic baselines fuse. For 8-bit files those are the file's own pixels (luma for
colour), exactly as published evaluations read them; other inputs (HU DICOM, NIfTI) go through
the model's own CT windowing / MRI normalisation first.

The folder is read as training reads it (`runtime.pairing.pair_sources`): 2D image files, NIfTI
volumes and DICOM series folders (DICOM files without a suffix too). A volume pair is checked as
training checks it and contributes every slice as one pair (`sub-01#3`, as training names its
slices); the split and `--cases` pick whole files/volumes before the slices are expanded, so no
patient's slices are on both sides; `--limit` then spreads over the slices.

A PET/ or SPECT/ folder makes the pairs functional (pet-mri, spect-mri): each pair also keeps its
functional image as 8-bit RGB (a gray PET drawn in the runtime's colour map), whose chroma every
fused luma gets back and against which the chroma error is measured.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medfuse.runtime import pairing
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.image import MedicalImage
from medfuse.runtime.modality import DEFAULT_MODALITY_PAIR, is_functional
from medfuse.runtime.preprocess import PreprocessConfig, ct_to_unit, mri_to_unit

SPLITS = ("all", "train", "val")
PHANTOM_CASES, PHANTOM_SLICES = 2, 2  # 4 phantom pairs: a report in minutes on a 2-core CPU


@dataclass
class Pair:
    name: str  # file name shared by the two images
    ct: MedicalImage  # the first source (CT, or PET/SPECT pseudo-colour)
    mri: MedicalImage
    ref_ct: np.ndarray  # uint8 (H, W): the gray reference of the first source (a functional image's luma)
    ref_mri: np.ndarray  # uint8 (H, W)
    modality_pair: str = DEFAULT_MODALITY_PAIR  # from the first source's folder: CT/, PET/ or SPECT/
    source_rgb: np.ndarray | None = None  # functional pairs: the first source as uint8 (H, W, 3) RGB
    files: tuple[Path, Path] | None = None  # the two files read (the overhead rows read them again)
    slice_index: int | None = None  # a volume pair's slice (`files` are then the two volumes/series)

    @property
    def colour(self) -> bool:
        return self.ct.is_rgb or self.source_rgb is not None


@dataclass(frozen=True)
class Selection:
    """Which pairs of a folder to use: a case-held-out split (train/split.py), a regex, a limit."""

    split: str = "all"  # all | train | val
    val_fraction: float = 0.2  # the training run's default
    seed: int = 0
    case_regex: str = r"^(\d{2})"  # case key of a file stem (Harvard: first two digits)
    cases: str | None = None  # keep only names matching this regex (e.g. '^(28|41)')
    limit: int | None = None  # at most this many pairs, evenly spread over the sorted list


def find_pairs(folder: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, first source, MRI) for each name (suffix aside) in both subfolders, sorted: 2D image
    files, NIfTI volumes and DICOM series folders, by training's rule (`pairing.pair_sources`)."""
    return pairing.find_pairs(folder, what="data folder")


def source_modality(folder: str | Path) -> str:
    """The modality pair of a data folder, from its first source subfolder's name (CT, PET, SPECT)."""
    return pairing.folder_modality(folder)


def select(names: list[str], sel: Selection, folder: Path | None = None) -> list[str]:
    """The names `sel` keeps, in sorted order (`folder`: where they are, for the error messages)."""
    return pairing.spread(_cases(names, sel, folder), sel.limit)


def _cases(names: list[str], sel: Selection, folder: Path | None) -> list[str]:
    """The names the split and `--cases` keep, sorted (before `--limit`)."""
    if sel.split not in SPLITS:
        raise MedfuseError(f"unknown split {sel.split!r}; valid: {', '.join(SPLITS)}")
    keep = sorted(names)
    if sel.split != "all":
        from medfuse.train.split import case_regex_option, split_by_case  # the training run's own rules, not copies

        train, val = split_by_case(keep, sel.val_fraction, case_regex_option(sel.case_regex), sel.seed, folder)
        keep = val if sel.split == "val" else train
    if sel.cases:
        try:
            pattern = re.compile(sel.cases)
        except re.error as err:
            raise MedfuseError(f"--cases is not a valid regular expression ({err})") from None
        keep = [n for n in keep if pattern.search(n)]
    return keep


def _reference(img: MedicalImage, to_unit, cfg: PreprocessConfig) -> np.ndarray:
    """The 8-bit gray image a metric compares against."""
    from medfuse.runtime.metrics import to_gray255

    if img.bit_depth == 8 and not img.is_hu:
        return to_gray255(np.clip(np.round(img.pixels), 0, 255)).astype(np.uint8)
    return np.round(np.clip(to_unit(img, cfg), 0, 1) * 255).astype(np.uint8)


def _functional(name: str, img: MedicalImage, mri: MedicalImage, pair: str, cfg: PreprocessConfig) -> Pair:
    from medfuse.runtime.functional import functional_rgb
    from medfuse.runtime.metrics import to_gray255

    rgb = np.round(functional_rgb(img) * 255.0).astype(np.uint8)
    return Pair(name, img, mri, to_gray255(rgb).astype(np.uint8), _reference(mri, mri_to_unit, cfg), pair, rgb)


# One pair to score before it is read: its name, the two sources, and a volume's slice index.
_Entry = tuple[str, tuple[Path, Path], int | None]
_Slices = tuple[list[MedicalImage], list[MedicalImage]]


def _entries(name: str, files: tuple[Path, Path], slices: _Slices | None) -> list[_Entry]:
    """A 2D pair as one entry; a volume pair (`slices`, read to learn its depth) as one per slice,
    named as training names them (`01#0`; a one-slice volume: `01`)."""
    depth = 1 if slices is None else len(slices[0])
    return [(name, files, None)] if depth == 1 else [(f"{name}#{i}", files, i) for i in range(depth)]


def _read_entries(entries: list[_Entry], functional: bool,
                  read: dict[tuple[Path, Path], _Slices]) -> Iterator[tuple[_Entry, MedicalImage, MedicalImage]]:
    """Each entry's two 2D images: from `read` (volumes already read) or read now, once for a
    volume's consecutive entries; a kept slice is copied out, so its volume is freed."""
    volume: tuple[tuple[Path, Path], _Slices] | None = None
    for entry in entries:
        _, files, index = entry
        if volume is None or volume[0] != files:
            volume = (files, read.pop(files, None) or pairing.read_slices(*files, functional))
        firsts, seconds = volume[1]
        i = 0 if index is None else index
        yield entry, *(replace(img, pixels=img.pixels.copy()) for img in (firsts[i], seconds[i]))


def load_pairs(folder: str | Path, sel: Selection = Selection(), cfg: PreprocessConfig | None = None) -> list[Pair]:
    cfg = cfg or PreprocessConfig()
    found = {name: (a, b) for name, a, b in find_pairs(folder)}
    pair = source_modality(folder)
    functional = is_functional(pair)
    names = _cases(list(found), sel, Path(folder))  # files and volumes: a volume's slices stay on one side
    if not names:
        raise MedfuseError("no pairs left after the split/--cases selection", folder)
    # Volumes are read here to learn their depth. Without --limit every slice is kept, so they are
    # kept for the reading below; with it, few slices are, and a volume is read again for them
    # rather than every volume of a large collection held in memory.
    read: dict[tuple[Path, Path], _Slices] = {}
    entries: list[_Entry] = []
    for name in names:
        files = found[name]
        slices = pairing.read_slices(*files, functional) if any(map(pairing.may_hold_slices, files)) else None
        entries += _entries(name, files, slices)
        if slices is not None and sel.limit is None:
            read[files] = slices
    pairs = []
    for (name, files, index), ct, mri in _read_entries(pairing.spread(entries, sel.limit), functional, read):
        if functional:
            loaded = _functional(name, ct, mri, pair, cfg)
        else:
            loaded = Pair(name, ct, mri, _reference(ct, ct_to_unit, cfg), _reference(mri, mri_to_unit, cfg))
        loaded.files, loaded.slice_index = files, index
        pairs.append(loaded)
    return pairs


@contextmanager
def dataset(data: Path | None, n_cases: int = PHANTOM_CASES, slices: int = PHANTOM_SLICES,
            size: int = 256) -> Iterator[tuple[Path, bool]]:
    """The folder to benchmark on, and whether it is real data: `data`, else phantoms written
    (8-bit PNG, the Harvard form) to a temporary folder that lives as long as the context."""
    if data is not None:
        yield Path(data), True
        return
    from medfuse.runtime.phantom import write_phantom_dataset

    with tempfile.TemporaryDirectory(prefix="medfuse-bench-") as tmp:
        yield write_phantom_dataset(Path(tmp) / "phantoms", n_cases=n_cases, slices_per_case=slices, size=size), False


def describe(pairs: list[Pair], folder: Path, real: bool, sel: Selection) -> str:
    if not real:
        return f"{len(pairs)} phantom pairs (runtime.phantom, 8-bit PNG, 256 px)"
    kind = f"{pairs[0].modality_pair} " if pairs and pairs[0].modality_pair != DEFAULT_MODALITY_PAIR else ""
    volumes = {p.files for p in pairs if p.slice_index is not None}
    sliced = f", slices of {len(volumes)} volume pair{'s' if len(volumes) != 1 else ''}" if volumes else ""
    what = f"{len(pairs)} {kind}pairs from {folder} (split {sel.split}{sliced}"
    what += f", cases /{sel.cases}/" if sel.cases else ""
    return what + ")"
