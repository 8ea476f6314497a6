"""A PET-MRI model end to end on colour phantoms: medfuse-train --modality-pair pet-mri ->
checkpoint -> medfuse-export (ONNX metadata, manifest) -> medfuse-run writing a colour PNG whose
chroma is the PET's, and medfuse-bench quality on colour pairs (luma metrics, chroma error)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from medfuse.runtime import io
from medfuse.runtime.color import chroma_error, split_luma_chroma, uptake_mask
from medfuse.runtime.phantom_functional import write_functional_dataset
from medfuse.runtime.preprocess import prepare_pair, to_uint8_image

torch = pytest.importorskip("torch", reason="training a model needs the [train] extra")
pytest.importorskip("onnx", reason="exporting a model needs the [export] extra")

TINY = ["--model-size", "tiny", "--input-size", "64", "--batch-size", "2", "--precision", "fp32", "--device", "cpu",
        "--val-fraction", "0.3", "--threads", "1", "--epochs", "1"]


@pytest.fixture(scope="module")
def pet_dir(tmp_path_factory) -> Path:
    return write_functional_dataset(tmp_path_factory.mktemp("pet") / "data", n_cases=3, slices_per_case=2, size=64)


@pytest.fixture(scope="module")
def pet_model(tmp_path_factory, pet_dir) -> tuple[Path, Path, str]:
    from medfuse.train import cli

    root = tmp_path_factory.mktemp("pet-model")
    result = CliRunner().invoke(cli.app, ["finetune", "--data", str(pet_dir), "--out", str(root / "run"),
                                          "--modality-pair", "pet-mri", *TINY])
    assert result.exit_code == 0, result.output
    done = subprocess.run([sys.executable, "-m", "medfuse.export.cli", str(root / "run" / "best.pt"),
                           "-o", str(root / "art"), "--engine", "skip", "--calib", str(pet_dir), "--parity-pairs", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run" / "best.pt", root / "art", result.output


def test_training_reads_pet_folders_and_stores_the_pair(pet_model):
    from medfuse.train.checkpoint import load_checkpoint

    ckpt, _, output = pet_model
    assert "6 pairs" in output and "held-out case(s)" in output
    data = load_checkpoint(ckpt)
    assert data["modality_pair"] == "pet-mri" and data["train_config"]["modality_pair"] == "pet-mri"
    assert data["model_config"]["roles"] == ["ct", "mri"]  # the functional luma takes the ct slot


def test_export_writes_the_pair_into_onnx_metadata_and_manifest(pet_model):
    from medfuse.export.metadata import read_metadata

    _, art, _ = pet_model
    assert read_metadata(art / "model.onnx")["medfuse.modality_pair"] == "pet-mri"
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["modality_pair"] == "pet-mri"
    assert manifest["artifacts"][0]["parity"]["samples"] == 4  # 3 phantoms + 1 real PET pair


def test_medfuse_run_writes_a_colour_png_with_the_pet_chroma(pet_model, pet_dir, tmp_path):
    from medfuse.runtime.run import Request, execute
    from medfuse.train.checkpoint import load_model

    ckpt, art, _ = pet_model
    pet_path, mri_path = pet_dir / "PET" / "02001.png", pet_dir / "MRI" / "02001.png"
    out, side = tmp_path / "fused.png", tmp_path / "side.png"
    summary = execute(Request(ct=pet_path, mri=mri_path, output=out, model=art, side_by_side=side, metrics=True))
    assert summary["modality_pair"] == "pet-mri" and summary["counts"]["ok"] == 1
    fused, source = io.read_image(out), io.read_image(pet_path)
    assert fused.is_rgb
    fused8, source8 = fused.pixels.astype(np.uint8), source.pixels.astype(np.uint8)
    # The colour map is kept: exactly wherever the fused luma and the PET chroma form an RGB colour
    # (this untrained model's flat gray luma is too dark for the saturated reds of `hot` elsewhere).
    luma, chroma = split_luma_chroma(fused8)[0], split_luma_chroma(source8)[1]
    raw = cv2.cvtColor(np.dstack([luma, chroma]).astype(np.float32), cv2.COLOR_YCrCb2RGB)
    in_gamut = uptake_mask(source8) & np.all((raw > -1 / 255) & (raw < 1 + 1 / 255), axis=-1)
    assert in_gamut.sum() > 200 and chroma_error(fused8, source8, in_gamut) < 1.0
    gray8 = np.repeat(luma[..., None] * 255, 3, -1).round().astype(np.uint8)
    assert chroma_error(gray8, source8, in_gamut) > 10
    # ... and the luma is the network's fusion (PyTorch reference, to ONNX Runtime rounding).
    model, _, pre, _ = load_model(ckpt)
    prepared = prepare_pair(source, io.read_image(mri_path), pre, "pet-mri")
    with torch.inference_mode():
        ref = model(torch.from_numpy(prepared.ct[None]), torch.from_numpy(prepared.mri[None]))[0].numpy()
    expected = to_uint8_image(ref, prepared.geometry, prepared.chroma)
    assert np.abs(split_luma_chroma(fused8)[0] - split_luma_chroma(expected)[0]).max() * 255 <= 2.0
    assert uptake_mask(source8).any() and io.read_image(side).pixels.shape[1] > 3 * 64
    metrics = summary["outputs"][0]["metrics"]
    assert set(metrics) >= {"MI", "SSIM", "ChromaErr"} and metrics["ChromaErr"] == pytest.approx(
        chroma_error(fused8, source8), abs=1.0)


def test_bench_quality_on_colour_pairs_scores_luma_and_chroma(pet_model, pet_dir, tmp_path):
    from medfuse.benchmarks import cli

    ckpt, art, _ = pet_model
    out = tmp_path / "q.json"
    result = CliRunner().invoke(cli.app, ["quality", "--data", str(pet_dir), "--artifacts", str(art),
                                          "--engine", "onnxruntime-fp32", "--device", "cpu", "--threads", "1",
                                          "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "ChromaErr" in result.output and "pet-mri pairs" in result.output
    rows = {r["method"]: r for r in json.loads(out.read_text())["quality"]}
    assert set(rows) == {"average", "maximum", "laplacian", "wavelet", "guided-filter", "maximum-of-inputs", "onnxruntime-fp32"}
    # The untrained model's flat luma clips more of the saturated colours, and so does the maximum
    # of the model's inputs: the phantoms' MRI is percentile-stretched there, a brighter luma.
    from medfuse.benchmarks.baselines import BASELINES  # the baselines that fuse the files

    for name, row in rows.items():
        assert row["pairs"] == 6 and 0 <= row["ChromaErr"] < (5.0 if name in BASELINES else 20.0) and "CTDim" not in row
        assert np.isfinite(row["MI"])
    # Metrics are on luma: a baseline scores the same as its gray fusion of the luma references.
    from medfuse.benchmarks.baselines import fuse_to_uint8
    from medfuse.benchmarks.data import load_pairs
    from medfuse.runtime.metrics import fusion_metrics

    pairs = load_pairs(pet_dir)
    gray_en = np.mean([fusion_metrics(fuse_to_uint8("average", p.ref_ct, p.ref_mri), p.ref_ct, p.ref_mri)["EN"]
                       for p in pairs])
    assert rows["average"]["EN"] == pytest.approx(gray_en, abs=0.05)


def test_a_pet_folder_without_the_modality_pair_option_names_it(pet_dir):
    from medfuse.runtime.errors import MedfuseError
    from medfuse.train.data import find_pairs

    with pytest.raises(MedfuseError, match=r"sub-folder CT/ \(found none\); for its PET/ folder pass --modality-pair pet-mri"):
        find_pairs(pet_dir, "finetune")


def test_modality_pair_settings_are_checked(pet_dir):
    from medfuse.runtime.errors import MedfuseError
    from medfuse.train.data import find_pairs
    from medfuse.train.run_config import TrainConfig

    assert TrainConfig(modality_pair="spect-mri").modality_pair == "spect-mri"
    with pytest.raises(MedfuseError, match="modality_pair must be one of"):
        TrainConfig(modality_pair="xray-mri")
    with pytest.raises(MedfuseError, match="pretraining is visible-infrared"):
        TrainConfig(stage="pretrain", modality_pair="pet-mri")
    pairs, _ = find_pairs(pet_dir, "finetune", modality_pair="pet-mri")
    assert len(pairs) == 6 and pairs[0].first.parent.name == "PET"
    with pytest.raises(MedfuseError, match="sub-folder SPECT/"):
        find_pairs(pet_dir, "finetune", modality_pair="spect-mri")


def test_a_ct_window_given_to_a_pet_model_is_refused(capsys, pet_model, pet_dir, tmp_path):
    """--window / --window-preset map CT HU; with a PET model they changed nothing, without a word."""
    from run_main import run_main

    from medfuse.runtime.cli import main

    _, art, _ = pet_model
    pet_path, mri_path = pet_dir / "PET" / "02001.png", pet_dir / "MRI" / "02001.png"
    code, _, err = run_main(capsys, main, ["medfuse-run", pet_path, mri_path, "-o", tmp_path / "f.png", "--model", art,
                                           "--window-preset", "bone"])
    assert code == 2 and "this pet-mri model fuses a PET image" in err and "Traceback" not in err
    assert not (tmp_path / "f.png").exists()
    from medfuse.runtime.inspect_cli import main as inspect_main

    code, out, err = run_main(capsys, inspect_main, ["medfuse-inspect", art])
    assert code == 0, err
    assert "PET: SUV 0-10 or its 99.5th percentile" in out and "CT window" not in out  # it showed 40/400 HU
