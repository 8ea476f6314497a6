"""Registered pairs in a data folder: `CT/` (or `PET/`, `SPECT/`) beside `MRI/`, one stem per pair.

The Harvard layout, and what `phantom.write_phantom_dataset` writes. A pair is the same file
stem in both subfolders, so `CT/01001.dcm` pairs with `MRI/01001.png`. Training
(`train/data.py`), export (calibration and parity pairs) and the benchmarks read a modality
folder by one rule, `pair_sources` (every image file, DICOM series folders too), and a volume
pair slice by slice (`read_slices`); training is stricter about unpaired files (an error there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.image import MedicalImage
from medfuse.runtime.modality import DEFAULT_MODALITY_PAIR, pair_of_folder

SOURCE_DIRS = ("ct", "pet", "spect")  # the first image of a pair: structural CT or a functional map
MRI_DIRS = ("mri", "mr")
# Every suffix that names an image format. Only these are cut off a name: PACS exports name DICOM
# files and series folders by UID (1.2.840.113619.2.55.3.11), and a number after a dot is part
# of such a name, not a format.
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")  # always one 2D image
IMAGE_SUFFIXES = (".nii.gz", ".nii", *RASTER_SUFFIXES, ".dcm", ".dicom", ".ima")  # .ima: Siemens' DICOM files
# Files of a DICOM export that hold no image: the media index (DICOMDIR) is skipped wherever
# folders are read.
INDEX_FILES = ("DICOMDIR",)


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
    """The name without its suffix; a UID-like name (digits after the last dot) stays whole."""
    suffix = image_suffix(path)
    return path.stem if suffix is None else path.name[: len(path.name) - len(suffix)]


def is_index_file(path: Path) -> bool:
    """A DICOM export's index (DICOMDIR): not an image, skipped when folders are read."""
    return path.name.upper() in INDEX_FILES


def folder_modality(folder: str | Path) -> str:
    """The modality pair of a data folder, from its first source subfolder's name (CT, PET, SPECT)."""
    src = find_subfolder(Path(folder), SOURCE_DIRS)
    return pair_of_folder(src.name) if src is not None else DEFAULT_MODALITY_PAIR


def find_subfolder(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first subfolder whose lower-case name is one of `names` (CT/, ct/, PET/ ...)."""
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def pair_sources(folder: Path) -> dict[str, Path]:
    """Stem -> file (or DICOM series folder) for every image in a modality folder: what training
    and the benchmarks read. A file without a suffix is taken for DICOM; another format's file
    (notes.txt) and hidden entries are skipped; two images sharing a stem are an error."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or is_index_file(path) or (path.is_file() and image_suffix(path) is None):
            continue  # hidden, a DICOMDIR, or another format's file (notes.txt)
        stem = file_stem(path)
        if stem in out:
            raise MedfuseError(f"two files share the stem {stem!r}: {out[stem].name} and {path.name}", folder)
        out[stem] = path
    return out


def may_hold_slices(path: Path) -> bool:
    """A source that may hold several slices (a DICOM series folder, a NIfTI file, a DICOM file,
    which may be multi-frame); a PNG/JPEG/TIFF/BMP is one 2D image."""
    return path.is_dir() or image_suffix(path) not in RASTER_SUFFIXES


def read_slices(first: Path, second: Path, functional: bool = False) -> tuple[list[MedicalImage], list[MedicalImage]]:
    """The 2D images of one pair of sources: each slice of a volume (two volumes: checked as a
    pair, `check_volume_pair`), or the one image of a 2D file; as many on each side. A
    `functional` (PET/SPECT) first volume gets one colour scale for all its slices."""
    from medfuse.runtime.functional import with_volume_range  # noqa: PLC0415
    from medfuse.runtime.io import read_stack  # noqa: PLC0415 (the readers pull in pydicom, nibabel)
    from medfuse.runtime.preprocess import check_volume_pair  # noqa: PLC0415

    a, b = (read_stack(p) for p in (first, second))
    if a.is_volume and b.is_volume:
        check_volume_pair(a, b)
    if functional:
        a = with_volume_range(a)
    firsts, seconds = _as_slices(a), _as_slices(b)
    if len(firsts) != len(seconds):
        raise MedfuseError(f"{first.name} has {len(firsts)} slices but {second.name} has {len(seconds)}", first.parent)
    return firsts, seconds


def _as_slices(image: MedicalImage) -> list[MedicalImage]:
    return [image.slice(i) for i in range(image.depth)] if image.is_volume else [image]


def _some(names: list[str], shown: int = 3) -> str:
    """A few of a folder's names for a message: 'nothing', 'a, b', 'a, b, c ... (40 in all)'."""
    if not names:
        return "nothing"
    more = f" ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def find_pairs(folder: str | Path, what: str = "data folder") -> list[tuple[str, Path, Path]]:
    """(stem, first source, MRI) for every stem in both subfolders, sorted; one clear error otherwise.

    Each subfolder is read by `pair_sources` (images and DICOM series folders, training's rule);
    `what` names the folder's role in the messages ("calibration folder", "data folder").
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MedfuseError(f"{what} does not exist or is not a folder", folder)
    src_dir, mri_dir = find_subfolder(folder, SOURCE_DIRS), find_subfolder(folder, MRI_DIRS)
    if src_dir is None or mri_dir is None:
        raise MedfuseError(f"{what} needs a CT/ (or PET/, SPECT/) and an MRI/ subfolder", folder)
    src, mri = pair_sources(src_dir), pair_sources(mri_dir)
    stems = sorted(src.keys() & mri.keys())
    if not stems:
        raise MedfuseError(f"no pairs: no file or series folder name (suffix aside) is in both {src_dir.name}/ and "
                           f"{mri_dir.name}/ ({src_dir.name}/ has {_some(sorted(src))}; "
                           f"{mri_dir.name}/ has {_some(sorted(mri))})", folder)
    return [(s, src[s], mri[s]) for s in stems]


def spread(items: list, limit: int | None) -> list:
    """At most `limit` items evenly spaced over the sorted list (covers every case, not the first)."""
    if limit is None or len(items) <= limit:
        return list(items)
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]
