"""Shared fixtures. Tests read real pairs from ../shared/data and skip with a reason without it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data folder, or a skip saying why it is missing."""
    if not (SHARED_DATA / "harvard-ct-mri" / "train" / "CT").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (real Harvard/RoadScene pairs live there)")
    return SHARED_DATA


PHANTOM_SIZE = 64  # small: fast to write, still a multiple of 32 for the model


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom dataset laid out like Harvard: CT/CCSSS.png and MRI/CCSSS.png, 3 cases x 2 slices, 64x64."""
    from medfuse.runtime.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantom-png"), n_cases=3, slices_per_case=2, size=PHANTOM_SIZE)


@pytest.fixture(scope="session")
def phantom_dicom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phantom DICOM series: CT/CC/CCSSS.dcm (HU via RescaleIntercept) and MRI/CC/CCSSS.dcm, 2 cases x 3 slices."""
    from medfuse.runtime.phantom import write_phantom_dataset

    out = tmp_path_factory.mktemp("phantom-dicom")
    return write_phantom_dataset(out, n_cases=2, slices_per_case=3, size=PHANTOM_SIZE, fmt="dicom")


@pytest.fixture(scope="session")
def phantom_nifti_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phantom NIfTI volumes: CT/CC.nii.gz (int16 HU) and MRI/CC.nii.gz, 1 case x 3 slices."""
    from medfuse.runtime.phantom import write_phantom_dataset

    out = tmp_path_factory.mktemp("phantom-nifti")
    return write_phantom_dataset(out, n_cases=1, slices_per_case=3, size=PHANTOM_SIZE, fmt="nifti")
