"""Paired image folders as a torch Dataset.

Layout: DATA/CT + DATA/MRI for fine-tuning (DATA/PET or DATA/SPECT + DATA/MRI for the pet-mri
and spect-mri pairs), DATA/vis + DATA/ir for pretraining; one pair = the
same file stem in both folders (CT/16004.png + MRI/16004.png, or a .dcm next to a .nii.gz).
Files are read by the runtime readers and prepared only by `runtime.preprocess.prepare_pair`,
the function inference uses, so training can never see images inference would not.

Pretraining: the visible RGB image plays the 3-channel role (`colour_first`; a coloured CT is
refused). `prepare_pair` reduces it to its
luma and repeats it over 3 channels, exactly what a gray CT becomes; the encoder therefore learns
on the input distribution it will meet after fine-tuning, not on colour it never sees again.

NIfTI volumes and DICOM series folders contribute every slice; their pairs must have equal depth.
Everything is read and prepared once, up front: a bad file stops the run before any training,
and epochs cost no decoding (160 Harvard pairs at 256x256 hold about 170 MB as float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.modality import DEFAULT_MODALITY_PAIR, SOURCE_FOLDERS, is_functional
from medfuse.runtime.pairing import folder_modality, pair_sources, read_slices  # shared with medfuse-bench (no torch)
from medfuse.runtime.preprocess import PreprocessConfig, prepare_pair

# Sub-folder names per stage: (3-channel role, 1-channel role).
STAGE_FOLDERS: dict[str, tuple[str, str]] = {"finetune": ("CT", "MRI"), "pretrain": ("vis", "ir")}


@dataclass(frozen=True)
class PairSource:
    """One matched pair of files (or DICOM series folders) and its shared stem."""

    name: str
    first: Path  # the 3-channel role (CT / visible)
    second: Path  # the 1-channel role (MRI / infrared)


def _subfolder(root: Path, name: str) -> Path:
    """DATA/name, accepting any letter case (ct/, Ct/) but not two spellings at once."""
    matches = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == name.lower()] if root.is_dir() else []
    if len(matches) != 1:
        found = "none" if not matches else ", ".join(p.name for p in matches)
        raise MedfuseError(f"expected exactly one sub-folder {name}/ (found {found}){_pair_hint(root, name)}", root)
    return matches[0]


def _pair_hint(root: Path, missing: str) -> str:
    """When CT/ is missing but a PET/ or SPECT/ folder is there: the option that reads it."""
    if missing.lower() != SOURCE_FOLDERS[DEFAULT_MODALITY_PAIR].lower() or not root.is_dir():
        return ""
    pair = folder_modality(root)
    return "" if pair == DEFAULT_MODALITY_PAIR else f"; for its {SOURCE_FOLDERS[pair]}/ folder pass --modality-pair {pair}"


def stage_folders(stage: str, modality_pair: str = DEFAULT_MODALITY_PAIR) -> tuple[str, str]:
    """The (3-channel role, 1-channel role) folder names: fine-tuning reads the pair's first folder."""
    first, second = STAGE_FOLDERS[stage]
    return (SOURCE_FOLDERS[modality_pair], second) if stage == "finetune" else (first, second)


def find_pairs(root: str | Path, stage: str, skip_unpaired: bool = False,
               modality_pair: str = DEFAULT_MODALITY_PAIR) -> tuple[list[PairSource], list[str]]:
    """Match the two modality folders of `root` by stem.

    Returns the pairs (sorted by name) and the unpaired entries ('CT/x.png', ...). Unpaired
    files are an error listing them unless `skip_unpaired`.
    """
    root = Path(root)
    if not root.is_dir():
        raise MedfuseError("data folder not found", root)
    first_name, second_name = stage_folders(stage, modality_pair)
    first_dir, second_dir = _subfolder(root, first_name), _subfolder(root, second_name)
    first, second = pair_sources(first_dir), pair_sources(second_dir)
    unpaired = [f"{first_dir.name}/{first[s].name}" for s in sorted(first.keys() - second.keys())]
    unpaired += [f"{second_dir.name}/{second[s].name}" for s in sorted(second.keys() - first.keys())]
    if unpaired and not skip_unpaired:
        shown = ", ".join(unpaired[:10]) + (f" and {len(unpaired) - 10} more" if len(unpaired) > 10 else "")
        raise MedfuseError(f"{len(unpaired)} unpaired file(s): {shown} (use --skip-unpaired to ignore them)", root)
    pairs = [PairSource(s, first[s], second[s]) for s in sorted(first.keys() & second.keys())]
    if not pairs:
        raise MedfuseError(f"no pairs found in {first_dir.name}/ and {second_dir.name}/", root)
    return pairs, unpaired


def prepare_source(pair: PairSource, cfg: PreprocessConfig, modality_pair: str = DEFAULT_MODALITY_PAIR,
                   colour_first: bool = False) -> list[np.ndarray]:
    """One pair -> [4, S, S] float32 arrays (3 channels of the first role, then the second), one per slice.

    A functional pair (PET/SPECT) contributes its luma as the first role, as inference does; its
    chroma is not trained on (it is put back after the network).
    """
    firsts, seconds = read_slices(pair.first, pair.second, is_functional(modality_pair))
    out = []
    for a, b in zip(firsts, seconds):
        prepared = prepare_pair(a, b, cfg, modality_pair, colour_first)
        out.append(np.concatenate([prepared.ct, prepared.mri], axis=0))
    return out


class PairDataset(Dataset):
    """Prepared pairs as (first [3,S,S], second [1,S,S]) float32 tensors in [0, 1]."""

    def __init__(self, pairs: list[PairSource], cfg: PreprocessConfig, modality_pair: str = DEFAULT_MODALITY_PAIR,
                 colour_first: bool = False):
        self.pairs = list(pairs)
        self.names: list[str] = []
        arrays: list[np.ndarray] = []
        for pair in self.pairs:
            slices = prepare_source(pair, cfg, modality_pair, colour_first)
            arrays += slices
            self.names += [pair.name] if len(slices) == 1 else [f"{pair.name}#{i}" for i in range(len(slices))]
        self._data = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 4, cfg.input_size, cfg.input_size)

    def __len__(self) -> int:
        return self._data.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self._data[index]
        return item[:3], item[3:]
