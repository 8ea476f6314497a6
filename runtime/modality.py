"""Modality pairs: which images a model fuses, and so how its first input is read and its output coloured.

`ct-mri` fuses two gray images. `pet-mri` and `spect-mri` fuse a functional image, usually a
pseudo-colour map, with MRI: the network sees the functional image's luma in the slot the CT
takes, and the fused luma gets the functional image's chroma back (runtime/functional.py). The
pair is stored with the model: the checkpoint's `modality_pair`, the ONNX metadata
`medfuse.modality_pair` and manifest.json, so medfuse-run picks the handling by itself.
"""

from __future__ import annotations

from medfuse.runtime.errors import MedfuseError

DEFAULT_MODALITY_PAIR = "ct-mri"
MODALITY_PAIRS = ("ct-mri", "pet-mri", "spect-mri")
FUNCTIONAL_PAIRS = ("pet-mri", "spect-mri")
# The data folder of the first image of each pair (the MRI folder is MRI/ for all of them).
SOURCE_FOLDERS = {"ct-mri": "CT", "pet-mri": "PET", "spect-mri": "SPECT"}


def check_modality_pair(name: str, path=None) -> str:
    """`name` when it is a known pair; a MedfuseError listing the known ones otherwise."""
    if name not in MODALITY_PAIRS:
        raise MedfuseError(f"unknown modality pair {name!r}; choose one of {', '.join(MODALITY_PAIRS)}", path)
    return name


def is_functional(name: str) -> bool:
    """True for PET/SPECT pairs, whose first image keeps its colour through the fusion."""
    return check_modality_pair(name) in FUNCTIONAL_PAIRS


def pair_of_folder(folder_name: str) -> str:
    """The modality pair whose first images sit in a folder of this name (CT, PET, SPECT; any case)."""
    for pair, name in SOURCE_FOLDERS.items():
        if folder_name.lower() == name.lower():
            return pair
    raise MedfuseError(f"no modality pair has its first images in a {folder_name}/ folder "
                       f"(known: {', '.join(SOURCE_FOLDERS.values())})")
