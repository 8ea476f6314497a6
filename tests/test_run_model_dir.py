"""Model folder lookup (--model, $MEDFUSE_MODEL, default) and where preprocessing comes from."""

from __future__ import annotations

import json

import pytest

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.model_dir import default_model_dir, open_model_dir, preprocess_config, read_onnx_metadata
from medfuse.runtime.preprocess import PreprocessConfig
from onnx_fixtures import write_model, write_model_dir


def test_lookup_order(tmp_path):
    a, b = write_model_dir(tmp_path / "a"), write_model_dir(tmp_path / "b")
    env = {"MEDFUSE_MODEL": str(b), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert open_model_dir(a, env).root == a
    assert open_model_dir(None, env).source == "$MEDFUSE_MODEL"
    default = write_model_dir(tmp_path / "cache" / "medfuse" / "model")
    found = open_model_dir(None, {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert (found.root, found.source) == (default, "default")


def test_default_is_under_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_model_dir({}) == tmp_path / ".cache" / "medfuse" / "model"


def test_no_model_anywhere_says_how_to_make_one(tmp_path):
    with pytest.raises(MedfuseError) as err:
        open_model_dir(None, {"XDG_CACHE_HOME": str(tmp_path)})
    assert "medfuse-export CHECKPOINT -o" in str(err.value) and "--model" in str(err.value)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(MedfuseError, match="no medfuse model here.*medfuse-export"):
        open_model_dir(tmp_path, {})
    with pytest.raises(MedfuseError, match="not found"):
        open_model_dir(tmp_path / "nope", {})


def test_single_file_and_its_precision(tmp_path):
    folder = write_model_dir(tmp_path, precisions=("fp32", "fp16"))
    model = open_model_dir(folder / "model.fp16.onnx", {})
    assert model.onnx == {"fp16": folder / "model.fp16.onnx"} and model.manifest is not None
    with pytest.raises(MedfuseError, match="not a model file"):
        open_model_dir(folder / "manifest.json", {})


def test_broken_manifest_is_named(tmp_path):
    folder = write_model_dir(tmp_path)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(MedfuseError, match="manifest.json"):
        open_model_dir(folder, {})


def test_preprocessing_comes_from_the_model_metadata(tmp_path):
    cfg = PreprocessConfig(input_size=96, clahe=True, ct_window_center=50.0)
    folder = write_model_dir(tmp_path, preprocess=cfg, manifest=False)
    model = open_model_dir(folder, {})
    meta = read_onnx_metadata(folder / "model.onnx")
    assert preprocess_config(meta, model, folder / "model.onnx") == cfg


def test_manifest_is_the_fallback_and_foreign_pairs_are_refused(tmp_path):
    cfg = PreprocessConfig(input_size=32)
    folder = write_model_dir(tmp_path, preprocess=cfg)
    model = open_model_dir(folder, {})
    assert preprocess_config({}, model, folder / "model.onnx") == cfg
    with pytest.raises(MedfuseError, match="xray-mri"):
        preprocess_config({"medfuse.modality_pair": "xray-mri"}, model, folder / "model.onnx")


def test_model_without_any_config_is_refused(tmp_path):
    path = write_model(tmp_path / "model.onnx", metadata=False)
    model = open_model_dir(tmp_path, {})
    with pytest.raises(MedfuseError, match="no preprocessing config"):
        preprocess_config(read_onnx_metadata(path), model, path)


def test_invalid_config_is_a_user_error(tmp_path):
    folder = write_model_dir(tmp_path)
    model = open_model_dir(folder, {})
    bad = json.dumps({"input_size": 33})
    with pytest.raises(MedfuseError, match="invalid"):
        preprocess_config({"medfuse.preprocess_config": bad}, model, folder / "model.onnx")
