"""Atomic outputs: a failed write leaves nothing half-written and keeps what was there."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.runtime import writers
from medfuse.runtime.atomic import atomic_link_or_copy, atomic_output, remove_stale_temporaries
from medfuse.runtime.io import write_dicom_series, write_png


def test_success_renames_into_place(tmp_path):
    with atomic_output(tmp_path / "a" / "out.txt") as tmp:
        assert tmp.parent == tmp_path / "a" and tmp.name.endswith("out.txt")
        tmp.write_text("done")
    assert (tmp_path / "a" / "out.txt").read_text() == "done"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["out.txt"]


def test_failure_removes_the_temporary_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_folder_replaces_folder(tmp_path):
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "stale.dcm").write_text("old")
    with atomic_output(tmp_path / "series") as tmp:
        tmp.mkdir()
        (tmp / "0001.dcm").write_text("new")
    assert [p.name for p in (tmp_path / "series").iterdir()] == ["0001.dcm"]
    assert [p.name for p in tmp_path.iterdir()] == ["series"]


def test_stale_temporaries_of_a_killed_writer_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".tmp-0a1b2c3d-last.pt").write_bytes(b"half")  # killed mid-write: no cleanup ran
    (tmp_path / ".old-deadbeef-art").mkdir()  # killed between the two renames of a folder
    (tmp_path / ".old-deadbeef-art" / "model.onnx").write_bytes(b"x")
    keep = ["last.pt", ".tmp-notes.txt", ".tmp-0a1b2c3d", "tmp-0a1b2c3d-x"]
    for name in keep:
        (tmp_path / name).write_text("mine")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".old-deadbeef-art", ".tmp-0a1b2c3d-last.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_png_writer_failing_mid_write_leaves_nothing(tmp_path, monkeypatch):
    class Boom:
        def tobytes(self):
            raise OSError("interrupted")

    monkeypatch.setattr(writers.cv2, "imencode", lambda *_: (True, Boom()))
    with pytest.raises(OSError):
        write_png(tmp_path / "fused.png", np.zeros((4, 4), np.uint8))
    assert not any(tmp_path.iterdir())


def test_series_writer_failing_on_a_later_slice_leaves_no_folder(tmp_path, monkeypatch):
    from medfuse.runtime import dicom_write

    real, calls = dicom_write.save, []

    def flaky(ds, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("interrupted")
        real(ds, path)

    monkeypatch.setattr(dicom_write, "save", flaky)
    with pytest.raises(OSError):
        write_dicom_series(tmp_path / "fused", np.zeros((3, 8, 8, 3), np.uint8), None)
    assert not any(tmp_path.iterdir())


def _write(path, text):
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def test_link_is_a_second_name_that_keeps_its_contents_when_the_source_is_replaced(tmp_path):
    _write(tmp_path / "last.pt", "epoch 1")
    atomic_link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").samefile(tmp_path / "last.pt")  # no bytes copied
    _write(tmp_path / "last.pt", "epoch 2")  # the next epoch replaces last.pt by rename
    assert (tmp_path / "best.pt").read_text() == "epoch 1" and (tmp_path / "last.pt").read_text() == "epoch 2"
    atomic_link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")  # replaces an existing name
    assert (tmp_path / "best.pt").read_text() == "epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_copy_where_the_filesystem_has_no_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted", str(dst))

    _write(tmp_path / "last.pt", "epoch 1")
    monkeypatch.setattr("os.link", no_links)
    atomic_link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert not (tmp_path / "best.pt").samefile(tmp_path / "last.pt")
    assert (tmp_path / "best.pt").read_text() == "epoch 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_a_filesystem_error_names_the_output_not_its_temporary(tmp_path, monkeypatch):
    import errno
    import os

    from medfuse.runtime.errors import MedfuseError

    def read_only(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(src))

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(MedfuseError) as raised:
        write_png(tmp_path / "fused.png", np.zeros((4, 4), np.uint8))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'fused.png'}: ") and "Read-only file system" in message
    assert ".tmp-" not in message and not any(tmp_path.iterdir())
