"""`--version` of each command: medfuse's version and its libraries', exit 0, no other work."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from medfuse import __version__
from medfuse.runtime.versions import installed_version, version_line

MODULES = {
    "medfuse-run": "medfuse.runtime.cli",
    "medfuse-inspect": "medfuse.runtime.inspect_cli",
    "medfuse-export": "medfuse.export.cli",
    "medfuse-train": "medfuse.train.cli",
    "medfuse-bench": "medfuse.benchmarks.cli",
}


@pytest.mark.parametrize("tool", sorted(MODULES))
def test_version_flag_prints_one_line_and_exits_0(tool):
    """Before any required argument is asked for (medfuse-run needs CT, MRI and -o otherwise)."""
    done = subprocess.run([sys.executable, "-m", MODULES[tool], "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"{tool} {__version__}; ")
    if tool != "medfuse-train":
        assert f"onnxruntime {installed_version('onnxruntime')}" in line
        assert "tensorrt " in line  # its version, or "not installed": either way the line says


def test_versions_come_from_the_installed_distributions():
    assert installed_version("numpy") == metadata.version("numpy")
    assert installed_version("opencv").endswith("(opencv-python-headless)")  # which OpenCV build
    assert installed_version("no-such-library-xyz") is None
    assert version_line("medfuse-run", ["no-such-library-xyz"]) == f"medfuse-run {__version__}; no-such-library-xyz not installed"
