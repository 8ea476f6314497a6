"""Model-ready input batches for parity checks and int8 calibration.

Both come through `prepare_pair`, exactly as at inference: phantom pairs (always available) and
real pairs from a folder with `CT/` and `MRI/` subfolders whose files share names (the Harvard
layout; `phantom.write_phantom_dataset` writes the same).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfuse.runtime import pairing
from medfuse.runtime.preprocess import PreparedPair, PreprocessConfig, prepare_pair

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


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(CT, MRI) sources matched by name (suffix aside); MedfuseError naming the folder when there are none.

    CT/ (or PET/, SPECT/) and MRI/ are read as training reads them (`pairing.pair_sources`): 2D
    files, and volumes (NIfTI, DICOM series folders, multi-frame DICOM), each giving its middle
    slice, so the training folder itself can calibrate.
    """
    return [(src, mri) for _, src, mri in pairing.find_pairs(folder, what="calibration folder")]


def split_pairs(pairs: list, calibration: int, parity: int) -> tuple[list, list]:
    """(calibration pairs, parity pairs), each spread over the folder and disjoint.

    Parity pairs are chosen first (they are few), so that int8 is judged on pairs it was not
    calibrated on; calibration takes the rest, or every pair when no other is left.
    """
    check = pairing.spread(pairs, parity) if parity else []
    rest = [p for p in pairs if p not in check] or pairs
    return pairing.spread(rest, calibration), check


def load_arrays(pairs: list[tuple[Path, Path]], cfg: PreprocessConfig,
                modality_pair: str = "ct-mri") -> tuple[np.ndarray, np.ndarray]:
    """Real pairs prepared as the model's runtime will prepare them (a PET/SPECT image: its luma)."""
    from medfuse.runtime.io import read_image

    return stack([prepare_pair(read_image(ct), read_image(mri), cfg, modality_pair) for ct, mri in pairs])
