"""The recipe scripts run end to end, as a user runs them, on a phantom data root.

recipes/harvard.sh (pretraining -> fine-tuning -> export -> quality) and recipes/functional.sh
(PET/SPECT fine-tuning from its checkpoint -> export -> quality) are shell scripts over the console
commands; here they run with the tiny model, 64x64 inputs and one step per epoch so the chain, not
the model, is what is checked. The full-length runs and their figures are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PHANTOM_SIZE, REPO_ROOT

FAST = f"--model-size tiny --input-size {PHANTOM_SIZE} --steps-per-epoch 1"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The console scripts live beside this interpreter (the venv's bin/), which need not be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"MEDFUSE_THREADS": "1", **extra})
    return env


def _run(args: list[str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=REPO_ROOT, env=_env(**extra), capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared data layout, made of phantoms: roadscene/, harvard-{ct,pet,spect}-mri/train/."""
    from medfuse.runtime.phantom import write_phantom_dataset
    from medfuse.runtime.phantom_functional import write_functional_dataset

    root = tmp_path_factory.mktemp("recipe-data")
    ct_mri = write_phantom_dataset(root / "harvard-ct-mri" / "train", n_cases=3, slices_per_case=2, size=PHANTOM_SIZE)
    road = root / "roadscene"
    shutil.copytree(ct_mri / "CT", road / "vis")
    shutil.copytree(ct_mri / "MRI", road / "ir")
    for folder in ("PET", "SPECT"):
        write_functional_dataset(root / f"harvard-{folder.lower()}-mri" / "train", n_cases=3, slices_per_case=2,
                                 size=PHANTOM_SIZE, folder=folder)
    return root


@pytest.fixture(scope="module")
def harvard_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("recipe-out") / "harvard"
    done = _run(["recipes/harvard.sh", str(data_root), str(out)], PRETRAIN_EPOCHS="1", FINETUNE_EPOCHS="1", EXTRA=FAST)
    return done, out


def _methods(quality_json: Path) -> dict[str, dict]:
    return {row["method"]: row for row in json.loads(quality_json.read_text())["quality"]}


def test_harvard_recipe_runs_the_whole_chain(harvard_run):
    done, out = harvard_run
    assert done.returncode == 0, done.stderr[-3000:]
    # Fine-tuning started from the pretraining checkpoint, and every tensor matched.
    assert "0 missing, 0 unexpected, 0 shape mismatches" in done.stdout + done.stderr
    manifest = json.loads((out / "art" / "manifest.json").read_text())
    assert manifest["modality_pair"] == "ct-mri"
    assert (out / "art" / "model.onnx").is_file()
    rows = _methods(out / "quality.json")
    assert {"maximum", "maximum-of-inputs", "laplacian", "wavelet", "guided-filter", "pytorch-fp32", "onnxruntime-fp32"} <= set(rows)
    # The exported model and PyTorch fuse the same images: the same scores.
    assert rows["onnxruntime-fp32"]["SSIM"] == pytest.approx(rows["pytorch-fp32"]["SSIM"], abs=1e-3)
    assert "recipe done" in done.stderr


def test_functional_recipe_fine_tunes_pet_and_spect_from_the_ct_checkpoint(harvard_run, data_root: Path, tmp_path: Path):
    done, out = harvard_run
    assert done.returncode == 0, done.stderr[-3000:]
    func = tmp_path / "functional"
    ran = _run(["recipes/functional.sh", str(data_root), str(func), str(out / "finetune" / "best.pt")],
               EPOCHS="1", EXTRA=FAST, PARALLEL="1")
    assert ran.returncode == 0, ran.stderr[-3000:]
    for pair in ("pet-mri", "spect-mri"):
        manifest = json.loads((func / pair / "art" / "manifest.json").read_text())
        assert manifest["modality_pair"] == pair
        rows = _methods(func / pair / "quality.json")
        assert {"maximum", "maximum-of-inputs", "laplacian", "wavelet", "guided-filter", "pytorch-fp32", "onnxruntime-fp32"} <= set(rows)
        assert "ChromaErr" in rows["onnxruntime-fp32"]
        # The functional pairs ask for every edge of either source (MRI anatomy inside the uptake),
        # whatever target the CT-MRI settings file names.
        trained = json.loads((func / pair / "finetune" / "config.json").read_text())
        assert trained["loss"]["detail_target"] == "max-of-gradients"
        # PET-MRI trains with a stronger detail term than SPECT-MRI (the recipe's per-pair settings).
        assert trained["loss"]["w_detail"] == (14.0 if pair == "pet-mri" else 7.0)
        assert trained["train"]["epochs"] == 1  # EPOCHS overrides both pairs' defaults


@pytest.mark.parametrize("script", ["recipes/harvard.sh", "recipes/functional.sh"])
def test_recipes_refuse_missing_arguments(script: str):
    done = _run([script], MEDFUSE_THREADS="")  # also: the scripts start with no thread setting
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_a_second_run_into_the_same_out_is_refused_not_overwritten(harvard_run, data_root: Path):
    done, out = harvard_run
    assert done.returncode == 0, done.stderr[-3000:]
    before = (out / "pretrain" / "last.pt").read_bytes()
    again = _run(["recipes/harvard.sh", str(data_root), str(out)], PRETRAIN_EPOCHS="1", FINETUNE_EPOCHS="1", EXTRA=FAST)
    assert again.returncode == 2 and "already holds a training run" in again.stderr and "FORCE=1" in again.stderr
    assert (out / "pretrain" / "last.pt").read_bytes() == before


@pytest.mark.parametrize("script, missing", [("recipes/harvard.sh", "harvard-ct-mri"),
                                             ("recipes/functional.sh", "harvard-spect-mri")])
def test_missing_data_is_refused_before_any_training(data_root: Path, tmp_path: Path, script: str, missing: str):
    partial = tmp_path / "data"
    shutil.copytree(data_root, partial, ignore=shutil.ignore_patterns(missing))
    init = tmp_path / "init.pt"
    init.write_bytes(b"")  # functional.sh checks it exists before starting; nothing reads it here
    args = [script, str(partial), str(tmp_path / "out")] + ([str(init)] if "functional" in script else [])
    done = _run(args, EXTRA=FAST)
    assert done.returncode == 2 and f"{missing}/train: folder not found" in done.stderr, done.stderr[-2000:]
    assert "+ medfuse-train" not in done.stderr and not (tmp_path / "out").exists()


def test_stopping_the_parallel_recipe_stops_its_trainings(harvard_run, data_root: Path, tmp_path: Path):
    """Background jobs of a script ignore Ctrl-C; they used to train on unattended after the script died."""
    import signal
    import time

    _, out = harvard_run
    func = tmp_path / "stopped"
    proc = subprocess.Popen(["bash", "recipes/functional.sh", str(data_root), str(func), str(out / "finetune" / "best.pt")],
                            cwd=REPO_ROOT, env=_env(EPOCHS="500", EXTRA=FAST, PARALLEL="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            (func / f"{pair}.log").is_file() and "+ medfuse-train" in (func / f"{pair}.log").read_text()
            for pair in ("pet-mri", "spect-mri")):
        time.sleep(0.5)
    time.sleep(2)  # both trainings are running
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    time.sleep(2)
    left = subprocess.run(["pgrep", "-f", str(func)], capture_output=True, text=True).stdout.split()
    assert left == [], "trainings left running after the recipe stopped"
