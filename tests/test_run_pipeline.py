"""The executor's pipeline and input rules, with a recording runner (no engine needed)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from medfuse.runtime.backends.base import Runner
from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.fuse import Fuser, Outcome, run_pipeline
from medfuse.runtime.inputs import detect_mode, match_folders, output_kind, pair_key
from medfuse.runtime.preprocess import Letterbox, PreparedPair, PreprocessConfig

S = 32


class Recorder(Runner):
    """max(ct, mri) in numpy; records batch sizes; can refuse a marked batch."""

    name = "recorder"

    def __init__(self, max_batch=None, refuse_value=None):
        super().__init__("recorder.onnx", "fp32")
        self.max_batch, self.refuse_value, self.batches = max_batch, refuse_value, []

    def activate(self):
        self.is_active = True

    def close(self):
        self.is_active = False

    def infer(self, feeds):
        self._check_feeds(feeds)
        self.batches.append(len(feeds["ct"]))
        if self.refuse_value is not None and np.any(feeds["ct"] == self.refuse_value):
            raise RuntimeError("engine refused this batch")
        return {"fused": np.maximum(feeds["ct"], feeds["mri"])}


def prepared(value: float) -> PreparedPair:
    return PreparedPair(np.full((3, S, S), value, np.float32), np.zeros((1, S, S), np.float32),
                        Letterbox.fit(S, S, S))


def run(runner, jobs, batch=4, load=None, save_delay=0.0, workers=3):
    fuser = Fuser(runner.__enter__(), PreprocessConfig(input_size=S), batch)
    load = load or (lambda job: (job, prepared(job / 100)))

    def save(job, state, fused):
        time.sleep(save_delay * (job % 3))  # writes finish out of order
        return Outcome(str(job), extra={"value": float(fused[0, 0, 0]), "thread": threading.current_thread().name})

    return run_pipeline(fuser, jobs, load, save, lambda job, err: Outcome(str(job), error=str(err)), workers)


def test_outcomes_keep_job_order_and_values():
    runner = Recorder()
    outcomes = run(runner, range(10), save_delay=0.01)
    assert [o.name for o in outcomes] == [str(i) for i in range(10)]
    assert [o.extra["value"] for o in outcomes] == pytest.approx([i / 100 for i in range(10)])
    assert runner.batches == [4, 4, 2]
    assert all(o.extra["thread"].startswith("medfuse-io") for o in outcomes)  # writes off the engine thread


def test_engine_profile_limit_splits_batches():
    runner = Recorder(max_batch=3)
    run(runner, range(8), batch=8)
    assert runner.batches == [3, 3, 2]


def test_a_failing_load_fails_its_job_only():
    def load(job):
        if job == 5:
            raise MedfuseError("cannot decode", f"/data/{job}.png")
        return job, prepared(0.5)

    outcomes = run(Recorder(), range(9), load=load)
    failed = [o for o in outcomes if not o.ok]
    assert [o.name for o in failed] == ["5"] and "/data/5.png" in failed[0].error
    assert sum(o.ok for o in outcomes) == 8


def test_a_batch_the_engine_refuses_fails_its_pairs_only():
    outcomes = run(Recorder(refuse_value=np.float32(0.05)), range(8), batch=4)  # job 5 is in the second batch
    assert [o.ok for o in outcomes] == [True] * 4 + [False] * 4
    assert "engine refused" in outcomes[-1].error


# ------------------------------------------------------------------------------ input rules
def test_output_kinds(tmp_path):
    assert output_kind(tmp_path / "a.png") == "image" and output_kind(tmp_path / "a.DCM") == "image"
    assert output_kind(tmp_path / "v.nii.gz") == "nifti" and output_kind(tmp_path / "out") == "folder"
    with pytest.raises(MedfuseError, match=".png or .dcm"):
        output_kind(tmp_path / "a.tiff")


def test_pair_keys_strip_one_suffix_and_nii_gz():
    from pathlib import Path

    assert pair_key(Path("01/01001.dcm")) == "01/01001" and pair_key(Path("ct.nii.gz")) == "ct"
    # a UID-named DICOM file (PACS export) keeps its digits: two slices are two keys, not one
    assert pair_key(Path("s/1.2.826.0.1.3680043.8.498.11")) == "s/1.2.826.0.1.3680043.8.498.11"
    assert pair_key(Path("1.2.3.4.DCM")) == "1.2.3.4" and pair_key(Path("IM0004")) == "IM0004"
    assert pair_key(Path("IM0001.IMA")) == "IM0001" and pair_key(Path("scan.xyz")) == "scan"  # any other suffix: cut


def test_image_suffix_knows_formats_uids_and_other_files():
    from pathlib import Path

    from medfuse.runtime.pairing import file_stem, image_suffix

    cases = {"a.PNG": ".png", "v.nii.gz": ".nii.gz", "x.dicom": ".dicom", "IM0004": "",
             "1.2.840.10008.5.1.4": "", "notes.txt": None, "meta.json": None}
    assert {name: image_suffix(Path(name)) for name in cases} == cases
    assert file_stem(Path("v.nii.gz")) == "v" and file_stem(Path("1.2.840.10008.5.1.4")) == "1.2.840.10008.5.1.4"
    assert file_stem(Path("notes.txt")) == "notes" and file_stem(Path("IM0001.IMA")) == "IM0001"


def test_mixed_inputs_and_missing_paths(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(MedfuseError, match="both be files or both be folders"):
        detect_mode(tmp_path / "a.png", tmp_path / "dir", tmp_path / "o.png")
    with pytest.raises(MedfuseError, match="no such file"):
        detect_mode(tmp_path / "missing.png", tmp_path / "a.png", tmp_path / "o.png")


def test_series_folders_are_volumes_and_nested_folders_are_pairs(phantom_dicom_dir, tmp_path):
    ct, mri = phantom_dicom_dir / "CT", phantom_dicom_dir / "MRI"
    assert detect_mode(ct / "01", mri / "01", tmp_path / "out") == "volume"
    assert detect_mode(ct / "01", mri / "01", tmp_path / "v.nii.gz") == "volume"
    assert detect_mode(ct / "01", mri / "01", tmp_path / "s.png") == "pair"
    assert detect_mode(ct, mri, tmp_path / "out") == "folder"
    with pytest.raises(MedfuseError, match="two volumes"):
        detect_mode(ct, mri, tmp_path / "v.nii.gz")


def test_nifti_volumes_are_not_written_as_a_dicom_series(phantom_nifti_dir, tmp_path):
    """Slice by slice in voxel order the series came out transposed and, for RAS data, mirrored."""
    ct, mri = phantom_nifti_dir / "CT" / "01.nii.gz", phantom_nifti_dir / "MRI" / "01.nii.gz"
    assert detect_mode(ct, mri, tmp_path / "v.nii.gz") == "volume"
    with pytest.raises(MedfuseError, match="NIfTI CT cannot be written as DICOM"):
        detect_mode(ct, mri, tmp_path / "f.dcm")  # it had no patient or plane, and voxel order
    assert detect_mode(ct, mri, tmp_path / "f.png") == "pair"
    with pytest.raises(MedfuseError, match="cannot be written as a DICOM series"):
        detect_mode(ct, mri, tmp_path / "series")


def test_folders_without_shared_names(tmp_path):
    for side, name in (("CT", "a.png"), ("MRI", "b.png")):
        (tmp_path / side).mkdir()
        (tmp_path / side / name).write_bytes(b"x")
    with pytest.raises(MedfuseError, match="share no file name"):
        match_folders(tmp_path / "CT", tmp_path / "MRI", tmp_path / "out")


def test_folder_mean_metrics_skip_pairs_without_a_value():
    """A pair whose CT has no bone has no CTDim (NaN): the folder's mean is the others', as in medfuse-bench."""
    import math

    from medfuse.runtime.cli_support import _mean_metrics

    outputs = [{"metrics": {"EN": 3.0, "CTDim": math.nan, "PSNR": math.inf}},
               {"metrics": {"EN": 5.0, "CTDim": 2.0, "PSNR": 12.0}}, {"metrics": None}]
    assert _mean_metrics(outputs) == {"EN": 4.0, "CTDim": 2.0, "PSNR": 12.0}
    assert math.isnan(_mean_metrics([{"metrics": {"CTDim": math.nan}}])["CTDim"])
