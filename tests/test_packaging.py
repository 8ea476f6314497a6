"""The wheel carries every medfuse.* subpackage, and the lean runtime imports without torch.

The editable install resolves imports through the source tree and so is looser than a wheel:
a subpackage missing from pyproject's list would pass there and fail for users.
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SUBPACKAGES = ["medfuse.runtime", "medfuse.runtime.backends", "medfuse.train", "medfuse.export", "medfuse.benchmarks"]
CONSOLE_SCRIPTS = ["medfuse-train", "medfuse-export", "medfuse-run", "medfuse-inspect", "medfuse-bench"]

# Makes `import torch` (and onnx, which drags protobuf-heavy code) fail in a child interpreter.
BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # setuptools stages files in ./build and would pack stale copies of deleted modules from it
    shutil.rmtree(REPO_ROOT / "build", ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)],
        check=True, capture_output=True, text=True,
    )
    (whl,) = out.glob("medfuse-*.whl")
    return whl


def test_wheel_lists_every_subpackage(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in ["medfuse", *SUBPACKAGES]:
        assert f"{pkg.replace('.', '/')}/__init__.py" in names, f"{pkg} missing from the wheel"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in CONSOLE_SCRIPTS:
        assert script in text


def test_imports_from_the_unpacked_wheel(wheel: Path, tmp_path: Path):
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = "import importlib, medfuse; " + "; ".join(f"importlib.import_module('{p}')" for p in SUBPACKAGES)
    code += "; import medfuse.runtime; print(medfuse.runtime.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); {code}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path)), "imported the source tree, not the wheel"


def _runtime_modules() -> list[str]:
    import medfuse.runtime

    mods = ["medfuse.runtime"]
    for info in pkgutil.walk_packages(medfuse.runtime.__path__, "medfuse.runtime."):
        mods.append(info.name)
    return mods


def test_runtime_imports_without_torch():
    modules = _runtime_modules()
    code = BLOCK_TORCH + "import importlib\n" + "\n".join(f"importlib.import_module({m!r})" for m in modules)
    code += "\nassert 'torch' not in sys.modules\nprint(len(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(modules) >= 3


def test_torch_block_is_effective():
    """Guards the guard: the blocker really makes torch unimportable."""
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH + "import torch"], capture_output=True, text=True)
    assert done.returncode != 0 and "blocked" in done.stderr


@pytest.mark.parametrize("tool, extra", [("train", "train"), ("export", "train,export,cpu")])
def test_tools_that_need_torch_say_which_extra_in_one_line(tool, extra):
    """A runtime-only install: medfuse-train --help named no extra, it died in `import torch`."""
    code = BLOCK_TORCH + f"sys.argv = ['medfuse-{tool}', '--help']\nfrom medfuse.entry_points import {tool}\n{tool}()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: medfuse-{tool} needs torch") and f"'.[{extra}]'" in done.stderr


@pytest.mark.parametrize("tool", ["train", "export"])
def test_version_answers_without_the_extras(tool):
    """--version is what a bug report asks for first, also where torch is missing (it says so)."""
    code = BLOCK_TORCH + f"sys.argv = ['medfuse-{tool}', '--version']\nfrom medfuse.entry_points import {tool}\n{tool}()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"medfuse-{tool} 0.1.0; torch ") and "torch" not in done.stderr


def test_tools_run_through_the_guard_when_everything_is_installed():
    done = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['medfuse-train', '--help']\n"
                           "from medfuse.entry_points import train\ntrain()"], capture_output=True, text=True)
    assert done.returncode == 0 and "finetune" in done.stdout, done.stderr


def test_sdist_carries_the_test_suite_whole(tmp_path):
    """Without MANIFEST.in the sdist had the test_*.py files but not conftest or the helpers."""
    import tarfile

    if not (REPO_ROOT / ".git").exists():
        pytest.skip("compares with `git ls-files`: needs a git checkout, not an unpacked sdist")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path),
                    str(REPO_ROOT)], check=True, capture_output=True, text=True)
    (sdist,) = tmp_path.glob("medfuse-*.tar.gz")
    names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tarfile.open(sdist).getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files", "tests", "recipes", "docs"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked and set(tracked) <= names, sorted(set(tracked) - names)
