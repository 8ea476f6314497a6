"""Paired folders: matching by stem, clear errors for unpaired files, prepared tensors per role."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pydicom
import pytest
import torch

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.phantom import write_phantom_dataset
from medfuse.runtime.preprocess import PreprocessConfig
from medfuse.train.data import PairDataset, find_pairs

CFG = PreprocessConfig(input_size=64)


@pytest.fixture()
def pngs(tmp_path):
    return write_phantom_dataset(tmp_path / "d", n_cases=2, slices_per_case=2, size=64)


def test_pairs_match_by_stem_and_prepare(pngs):
    pairs, unpaired = find_pairs(pngs, "finetune")
    assert [p.name for p in pairs] == ["01001", "01002", "02001", "02002"] and unpaired == []
    ds = PairDataset(pairs, CFG)
    ct, mri = ds[1]
    assert ct.shape == (3, 64, 64) and mri.shape == (1, 64, 64) and ct.dtype == torch.float32
    assert 0 <= ct.min() and ct.max() <= 1 and mri.max() == pytest.approx(1.0)
    assert torch.equal(ct[0], ct[2])  # gray CT repeated over 3 channels


def test_unpaired_files_are_listed_or_skipped(pngs):
    (pngs / "CT" / "01001.png").rename(pngs / "CT" / "09009.png")
    (pngs / "MRI" / "readme.txt").write_text("not an image")  # ignored: not an image suffix
    with pytest.raises(MedfuseError, match=r"2 unpaired file\(s\): CT/09009.png, MRI/01001.png .*--skip-unpaired"):
        find_pairs(pngs, "finetune")
    pairs, unpaired = find_pairs(pngs, "finetune", skip_unpaired=True)
    assert len(pairs) == 3 and unpaired == ["CT/09009.png", "MRI/01001.png"]


def test_folder_errors(tmp_path, pngs):
    with pytest.raises(MedfuseError, match="data folder not found"):
        find_pairs(tmp_path / "nope", "finetune")
    with pytest.raises(MedfuseError, match=r"sub-folder vis/ \(found none\)"):
        find_pairs(pngs, "pretrain")
    cv2.imwrite(str(pngs / "CT" / "01001.tif"), np.zeros((64, 64), np.uint8))
    with pytest.raises(MedfuseError, match="two files share the stem '01001'"):
        find_pairs(pngs, "finetune")


def test_size_mismatch_names_both_files(pngs):
    cv2.imwrite(str(pngs / "MRI" / "01002.png"), np.zeros((32, 48), np.uint8))
    pairs, _ = find_pairs(pngs, "finetune")
    with pytest.raises(MedfuseError, match="01002.png.*differ in size"):
        PairDataset(pairs, CFG)


def test_pretrain_visible_rgb_becomes_gray_3ch_letterboxed(tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("vis", "ir"):
        (tmp_path / sub).mkdir()
    rgb = rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)  # RoadScene-like landscape frame
    cv2.imwrite(str(tmp_path / "vis" / "FLIR_00001.jpg"), rgb)
    cv2.imwrite(str(tmp_path / "ir" / "FLIR_00001.jpg"), rng.integers(0, 255, (30, 50), dtype=np.uint8))
    pairs, _ = find_pairs(tmp_path, "pretrain")
    vis, ir = PairDataset(pairs, CFG, colour_first=True)[0]  # what load_data passes for pretraining
    assert vis.shape == (3, 64, 64) and ir.shape == (1, 64, 64)
    assert torch.equal(vis[0], vis[1]) and torch.equal(vis[1], vis[2])
    assert vis[:, :5].abs().max() == 0 and vis[:, 32].abs().max() > 0  # padded top band, image in the middle
    with pytest.raises(MedfuseError, match="colour image"):  # the same colour image as a CT is refused
        PairDataset(pairs, CFG)


@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
def test_volumes_give_one_sample_per_slice(tmp_path, fmt):
    root = write_phantom_dataset(tmp_path / "n", n_cases=2, slices_per_case=3, size=64, fmt=fmt)
    pairs, _ = find_pairs(root, "finetune")
    ds = PairDataset(pairs, CFG)
    assert len(pairs) == 2 and len(ds) == 6
    assert ds.names[:3] == ["01#0", "01#1", "01#2"]


def test_series_with_repeated_positions_or_other_slice_counts_are_refused(tmp_path):
    """Volumes train slice by slice against their partner: a series with two echoes per position,
    or one slice short, would pair the wrong slices."""
    root = write_phantom_dataset(tmp_path / "n", n_cases=1, slices_per_case=3, size=64, fmt="dicom")
    pairs, _ = find_pairs(root, "finetune")
    mri_files = sorted(pairs[0].second.glob("*.dcm"))
    ds = pydicom.dcmread(mri_files[2])
    ds.ImagePositionPatient = pydicom.dcmread(mri_files[1]).ImagePositionPatient  # a second echo of slice 1
    ds.save_as(mri_files[2])
    with pytest.raises(MedfuseError, match="3 slices at only 2 positions") as info:
        PairDataset(pairs, CFG)
    assert str(pairs[0].second) in str(info.value)
    mri_files[2].unlink()
    with pytest.raises(MedfuseError, match="has 3 slices and MRI .* has 2"):
        PairDataset(pairs, CFG)


def test_uid_named_files_and_series_folders_pair_by_their_whole_name(tmp_path, pngs):
    """PACS exports name DICOM files and series folders by UID: a dot followed by digits is part
    of the name, not a suffix (such files were skipped, and two series taken for one stem)."""
    uids = ["1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12"]
    series = write_phantom_dataset(tmp_path / "s", n_cases=2, slices_per_case=2, size=64, fmt="dicom")
    for folder in ("CT", "MRI"):
        slices = sorted((series / folder).glob("*/*.dcm"))[:2]  # case 01's two slices
        for uid, dcm in zip(uids, slices):
            shutil.copy(dcm, pngs / folder / uid)
    (pngs / "MRI" / "notes.json").write_text("{}")  # another format's file: still skipped
    pairs, _ = find_pairs(pngs, "finetune")
    assert [p.name for p in pairs] == ["01001", "01002", "02001", "02002", *uids]
    assert [p.first.name for p in pairs[-2:]] == uids
    assert len(PairDataset(pairs, CFG)) == 6
    for folder in ("CT", "MRI"):
        for case, uid in zip(sorted((series / folder).iterdir()), uids):
            case.rename(case.parent / uid)
    assert [p.name for p in find_pairs(series, "finetune")[0]] == uids  # two series, not one shared stem


def test_siemens_ima_files_pair_and_a_dicomdir_is_skipped(tmp_path):
    from medfuse.runtime.inputs import match_folders

    series = write_phantom_dataset(tmp_path / "s", n_cases=1, slices_per_case=1, size=64, fmt="dicom")
    root = tmp_path / "d"
    for folder, suffix in (("CT", ".IMA"), ("MRI", ".dcm")):
        (root / folder).mkdir(parents=True)
        shutil.copy(next((series / folder).glob("*/*.dcm")), root / folder / f"IM0001{suffix}")
        (root / folder / "DICOMDIR").write_bytes(b"\0" * 132)  # a media index: no image in it
    pairs, unpaired = find_pairs(root, "finetune")
    assert [p.name for p in pairs] == ["IM0001"] and unpaired == []
    assert [job.name for job in match_folders(root / "CT", root / "MRI", tmp_path / "o").jobs] == ["IM0001"]


def test_an_enhanced_multiframe_pair_gives_every_frame(tmp_path):
    """Current scanners write a volume as one enhanced multi-frame file: training and medfuse-bench
    take each frame, not the middle one alone (as a series folder gives each file)."""
    from dicom_check import enhanced_image

    from medfuse.benchmarks.data import load_pairs

    root = tmp_path / "d"
    for folder, modality in (("CT", "CT"), ("MRI", "MR")):
        (root / folder).mkdir(parents=True)
        enhanced_image(root / folder / "p1.dcm", modality=modality, positions=(10.0, 12.5, 15.0),
                       frame_of_reference="1.2.3")
    pairs, _ = find_pairs(root, "finetune")
    assert len(PairDataset(pairs, CFG)) == 3
    assert [p.name for p in load_pairs(root)] == ["p1#0", "p1#1", "p1#2"]
