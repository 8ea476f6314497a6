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
