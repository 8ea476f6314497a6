"""Model-ready input batches for parity checks and int8 calibration.

Both come through `prepare_pair`, exactly as at inference: phantom pairs (always available) and
real pairs from a folder with `CT/` and `MRI/` subfolders whose files share names (the Harvard
layout; `phantom.write_phantom_dataset` writes the same).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.preprocess import PreparedPair, PreprocessConfig, prepare_pair

CT_DIRS = ("ct", "pet", "spect")  # functional images: the network's first input is their luma, as for RGB CT
MRI_DIRS = ("mri", "mr")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".nii", ".gz"}
PHANTOM_SLICES = (0.35, 0.5, 0.65)  # slice positions: different anatomy per phantom


def stack(pairs: list[PreparedPair]) -> tuple[np.ndarray, np.ndarray]:
    """PreparedPairs -> ct [N,3,S,S], mri [N,1,S,S] float32."""
    ct = np.stack([p.ct for p in pairs]).astype(np.float32)
    mri = np.stack([p.mri for p in pairs]).astype(np.float32)
    return ct, mri


def phantom_arrays(cfg: PreprocessConfig, count: int = len(PHANTOM_SLICES)) -> tuple[np.ndarray, np.ndarray]:
    from medfuse.runtime.image import MedicalImage
    from medfuse.runtime.phantom import make_phantom_pair

    prepared = []
    for i in range(count):
        ct_hu, mri = make_phantom_pair(size=cfg.input_size, seed=i,
                                       slice_pos=PHANTOM_SLICES[i % len(PHANTOM_SLICES)], noise=0.01)
        ct_img = MedicalImage(ct_hu, Path(f"phantom-{i}-ct"), "png", modality="CT", is_hu=True)
        mri_img = MedicalImage(mri, Path(f"phantom-{i}-mri"), "png", modality="MR")
        prepared.append(prepare_pair(ct_img, mri_img, cfg))
    return stack(prepared)


def _subdir(folder: Path, names: tuple[str, ...]) -> Path | None:
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def _stem(path: Path) -> str:
    """The name without its image suffix, so CT/01001.dcm pairs with MRI/01001.png."""
    return path.name[:-7] if path.name.lower().endswith(".nii.gz") else path.stem


def _images(folder: Path) -> dict[str, Path]:
    return {_stem(p): p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES}


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(CT, MRI) file pairs matched by name (suffix aside); MedfuseError naming the folder when there are none.

    The images sit directly in CT/ and MRI/: 2D files, or NIfTI volumes (their middle slice).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MedfuseError("calibration folder does not exist or is not a folder", folder)
    ct_dir, mri_dir = _subdir(folder, CT_DIRS), _subdir(folder, MRI_DIRS)
    if ct_dir is None or mri_dir is None:
        raise MedfuseError("calibration folder has no CT/ and MRI/ subfolders with pairs", folder)
    ct_files, mri_files = _images(ct_dir), _images(mri_dir)
    pairs = [(ct_files[name], mri_files[name]) for name in sorted(ct_files.keys() & mri_files.keys())]
    if not pairs:
        raise MedfuseError("calibration folder has no CT/MRI pairs (image files of the same name in CT/ and MRI/)",
                           folder)
    return pairs


def spread(items: list, limit: int) -> list:
    """At most `limit` items evenly spaced over the sorted list (covers every case, not the first)."""
    if len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


def split_pairs(pairs: list, calibration: int, parity: int) -> tuple[list, list]:
    """(calibration pairs, parity pairs), each spread over the folder and disjoint.

    Parity pairs are chosen first (they are few), so that int8 is judged on pairs it was not
    calibrated on; calibration takes the rest, or every pair when no other is left.
    """
    check = spread(pairs, parity) if parity else []
    rest = [p for p in pairs if p not in check] or pairs
    return spread(rest, calibration), check


def load_arrays(pairs: list[tuple[Path, Path]], cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    from medfuse.runtime.io import read_image

    return stack([prepare_pair(read_image(ct), read_image(mri), cfg) for ct, mri in pairs])
