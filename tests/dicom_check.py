"""Run dciodvfy (dicom3tools) on a written DICOM file; skip without it, except in CI which installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def dataset(**attrs):
    """A pydicom Dataset with these attributes (a functional group item, a hand-made header)."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def dciodvfy_errors(path: Path) -> list[str]:
    """The "Error" lines dciodvfy reports for `path` (empty when the file is valid)."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dciodvfy is missing in CI; .ci/run installs dicom3tools")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
