"""Registered pairs in a data folder: `CT/` (or `PET/`, `SPECT/`) beside `MRI/`, one stem per pair.

The Harvard layout, and what `phantom.write_phantom_dataset` writes. A pair is the same file
stem in both subfolders, so `CT/01001.dcm` pairs with `MRI/01001.png`. Export (calibration and
parity pairs) and the benchmarks read folders through this module; training has stricter rules
of its own (unpaired files are an error there, series folders count) in `train/data.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfuse.runtime.errors import MedfuseError

SOURCE_DIRS = ("ct", "pet", "spect")  # the first image of a pair: structural CT or a functional map
MRI_DIRS = ("mri", "mr")
PAIR_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz")
# Every suffix that names an image format. Only these are cut off a name: PACS exports name DICOM
# files and series folders by UID (1.2.840.113619.2.55.3.11), and a number after a dot is part
# of such a name, not a format.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")


def image_suffix(path: Path) -> str | None:
    """The image-format suffix of a name, lower case (`.nii.gz` as one); "" for a name without one
    (DICOM files often have none, or end in a UID's digits); None for another format's suffix
    (.txt, .json: not an image)."""
    name = path.name.lower()
    known = next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)
    if known is not None:
        return known
    other = Path(name).suffix
    return "" if not other or other[1:].isdigit() else None


def file_stem(path: Path) -> str:
    """The name without its image-format suffix (a UID-like name stays whole)."""
    return path.name[: len(path.name) - len(image_suffix(path) or "")]


def find_subfolder(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first subfolder whose lower-case name is one of `names` (CT/, ct/, PET/ ...)."""
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def images_by_stem(folder: Path, suffixes: tuple[str, ...] = PAIR_SUFFIXES) -> dict[str, Path]:
    return {file_stem(p): p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and image_suffix(p) in suffixes}


def find_pairs(folder: str | Path, what: str = "data folder",
               suffixes: tuple[str, ...] = PAIR_SUFFIXES) -> list[tuple[str, Path, Path]]:
    """(stem, first source, MRI) for every stem in both subfolders, sorted; one clear error otherwise.

    `what` names the folder's role in the messages ("calibration folder", "data folder").
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MedfuseError(f"{what} does not exist or is not a folder", folder)
    src_dir, mri_dir = find_subfolder(folder, SOURCE_DIRS), find_subfolder(folder, MRI_DIRS)
    if src_dir is None or mri_dir is None:
        raise MedfuseError(f"{what} needs a CT/ (or PET/, SPECT/) and an MRI/ subfolder", folder)
    src, mri = images_by_stem(src_dir, suffixes), images_by_stem(mri_dir, suffixes)
    stems = sorted(src.keys() & mri.keys())
    if not stems:
        nested = not src and any(p.is_dir() for p in src_dir.iterdir())
        hint = (f"; {src_dir.name}/ holds subfolders (DICOM series?), but only files directly in it are read: "
                "give 2D images or NIfTI volumes") if nested else ""
        raise MedfuseError(f"no pairs: no file name (suffix aside) is in both {src_dir.name}/ and {mri_dir.name}/"
                           f"{hint}", folder)
    return [(s, src[s], mri[s]) for s in stems]


def spread(items: list, limit: int | None) -> list:
    """At most `limit` items evenly spaced over the sorted list (covers every case, not the first)."""
    if limit is None or len(items) <= limit:
        return list(items)
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]
