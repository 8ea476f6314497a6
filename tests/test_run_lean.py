"""The lean promise: medfuse.runtime fuses without torch, and `pip install medfuse[cpu]` is enough.

The fresh-venv test installs the package with only its base and [cpu] dependencies and runs the
console script; it is slow (a minute or two) and skipped when MEDFUSE_SKIP_VENV_TEST=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom.data
import pytest

from conftest import REPO_ROOT
from medfuse.runtime.preprocess import PreprocessConfig
from onnx_fixtures import write_model_dir

BLOCK_HEAVY = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "onnx"):
                raise ImportError(f"{name} is blocked in this test")
    sys.meta_path.insert(0, _Block())
""")


@pytest.fixture(scope="module")
def lean_model(tmp_path_factory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("lean-model"), precisions=("fp32", "int8"),
                           preprocess=PreprocessConfig(input_size=64))


def test_runtime_fuses_with_torch_unimportable(tmp_path, lean_model, phantom_dir):
    out = tmp_path / "fused.png"
    code = BLOCK_HEAVY + textwrap.dedent(f"""
        import importlib, pkgutil
        import medfuse.runtime
        for info in pkgutil.walk_packages(medfuse.runtime.__path__, "medfuse.runtime."):
            importlib.import_module(info.name)
        from medfuse.runtime.run import Request, execute
        from pathlib import Path
        summary = execute(Request(ct=Path({str(phantom_dir / 'CT' / '01001.png')!r}),
                                  mri=Path({str(phantom_dir / 'MRI' / '01001.png')!r}),
                                  output=Path({str(out)!r}), model=Path({str(lean_model)!r})))
        assert summary["counts"]["ok"] == 1, summary
        from medfuse.runtime.api import FusionModel
        with FusionModel.open(Path({str(lean_model)!r})) as model:
            fused = model.fuse(Path({str(phantom_dir / 'CT' / '01001.png')!r}), Path({str(phantom_dir / 'MRI' / '01001.png')!r}))
        assert fused.shape == (64, 64, 3), fused.shape
        banned = [m for m in sys.modules if m.split(".")[0] in ("torch", "onnx")]
        assert not banned, banned
        print("ok", summary["backend"], summary["precision"])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "onnxruntime-cpu", "int8"]
    assert out.stat().st_size > 0


def test_blocker_really_blocks():
    done = subprocess.run([sys.executable, "-c", BLOCK_HEAVY + "import torch"], capture_output=True, text=True)
    assert done.returncode != 0 and "blocked" in done.stderr


def _size_mb(folder: Path) -> float:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 2**20


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MEDFUSE_SKIP_VENV_TEST") == "1", reason="MEDFUSE_SKIP_VENV_TEST=1")
def test_fresh_venv_with_cpu_extra_runs_medfuse_run(tmp_path, lean_model, phantom_dir):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
    installed = subprocess.run([*pip, f"{REPO_ROOT}[cpu]"], capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        pytest.fail(f"pip install medfuse[cpu] failed:\n{installed.stderr[-2000:]}")
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout.lower()
    for heavy in ("torch", "onnx=", "matplotlib", "tensorrt"):
        assert heavy not in listed, f"{heavy} came with medfuse[cpu]"
    out = tmp_path / "fused.png"
    done = subprocess.run([str(venv / "bin" / "medfuse-run"), str(phantom_dir / "CT" / "01001.png"),
                           str(phantom_dir / "MRI" / "01001.png"), "-o", str(out), "--model", str(lean_model)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0
    inspected = subprocess.run([str(venv / "bin" / "medfuse-inspect"), str(lean_model), "--json"],
                               capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["auto_choice"].startswith("onnxruntime-cpu int8")
    # without the dicom-codecs extra a JPEG-LS DICOM is refused in one line that names the way out
    compressed = pydicom.data.get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    refused = subprocess.run([str(venv / "bin" / "medfuse-run"), str(phantom_dir / "CT" / "01001.png"), compressed,
                              "-o", str(tmp_path / "no.png"), "--model", str(lean_model)],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert compressed in refused.stderr and "pip install 'medfuse[dicom-codecs]'" in refused.stderr
    assert "\t" not in refused.stderr  # pydicom's indented list of plugins stays out of the sentence
    assert not (tmp_path / "no.png").exists()
    print(f"\nlean venv {_size_mb(venv):.0f} MiB")
