"""Validation split by case: no case on both sides, deterministic, sensible errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfuse.runtime.errors import MedfuseError
from medfuse.train.split import HARVARD_CASE_REGEX, case_of, split_by_case

HARVARD_NAMES = [f"{case}{s:03d}.png" for case in (16, 20, 21, 28, 32, 33) for s in range(3, 9)] + [
    f"20{s:02d}.png" for s in range(5, 9)  # the four-digit names of the real folder
]


def test_no_case_crosses_the_split():
    train, val = split_by_case(HARVARD_NAMES, 0.2, HARVARD_CASE_REGEX, seed=0)
    train_cases = {case_of(n, HARVARD_CASE_REGEX) for n in train}
    val_cases = {case_of(n, HARVARD_CASE_REGEX) for n in val}
    assert train_cases and val_cases
    assert not train_cases & val_cases
    assert sorted(train + val) == sorted(HARVARD_NAMES)
    assert len(val) >= 0.2 * len(HARVARD_NAMES)


def test_split_is_deterministic_and_order_free():
    a = split_by_case(HARVARD_NAMES, 0.25, HARVARD_CASE_REGEX, seed=3)
    b = split_by_case(list(reversed(HARVARD_NAMES)), 0.25, HARVARD_CASE_REGEX, seed=3)
    assert a == b
    seeds = {tuple(split_by_case(HARVARD_NAMES, 0.25, HARVARD_CASE_REGEX, seed=s)[1]) for s in range(6)}
    assert len(seeds) > 1  # the seed actually chooses


def test_without_regex_every_file_is_a_case():
    names = [f"FLIR_{i:05d}.jpg" for i in range(10)]
    train, val = split_by_case(names, 0.3, None, seed=0)
    assert len(val) == 3 and len(train) == 7


def test_zero_fraction_and_errors():
    assert split_by_case(HARVARD_NAMES, 0.0, HARVARD_CASE_REGEX, 0)[1] == []
    with pytest.raises(MedfuseError, match="at least 2 cases") as too_few:
        split_by_case(["16001.png", "16002.png"], 0.2, HARVARD_CASE_REGEX, 0, Path("scans/train"))
    assert str(too_few.value).startswith("scans/train: ") and r"'^(\d{2})'" in str(too_few.value)
    with pytest.raises(MedfuseError, match="case-regex"):
        split_by_case(["brain.png", "16002.png"], 0.2, HARVARD_CASE_REGEX, 0)


def test_split_seed_keeps_the_held_out_cases_while_seed_changes(tmp_path):
    """Several seeds of one recipe must be scored on the same validation cases."""
    from dataclasses import replace

    from medfuse.runtime.phantom import write_phantom_dataset
    from medfuse.train.run_config import RunConfig
    from medfuse.train.setup import load_data

    data = write_phantom_dataset(tmp_path / "d", n_cases=10, slices_per_case=1, size=32)

    def val_cases(**train) -> list[str]:
        run = RunConfig.defaults("finetune")
        run = replace(run, train=replace(run.train, data=data, val_fraction=0.2, **train))
        return load_data(run, lambda message: None).val_cases

    fixed = val_cases(seed=0)
    moved = {tuple(val_cases(seed=s)) for s in range(1, 6)}
    assert moved - {tuple(fixed)}  # the seed alone moves the split
    assert all(val_cases(seed=s, split_seed=0) == fixed for s in range(1, 6))


def test_bad_or_missing_case_keys_say_what_to_do():
    with pytest.raises(MedfuseError, match=r"--case-regex '\(unclosed' is not a valid regular expression"):
        split_by_case(["a.png", "b.png"], 0.2, "(unclosed", 0)
    with pytest.raises(MedfuseError, match=r"sub-01: file name does not match .*'\^\(sub-\\d\+\)'.*or ''"):
        split_by_case(["sub-01.nii.gz", "sub-02.nii.gz"], 0.2, HARVARD_CASE_REGEX, 0)
    # no split asked for: no case key needed (the "needs 2 cases" error suggests exactly this)
    assert split_by_case(["sub-01.nii.gz", "sub-02.nii.gz"], 0.0, HARVARD_CASE_REGEX, 0) == (
        ["sub-01.nii.gz", "sub-02.nii.gz"], [])
    # "" = every file its own case, as None (the CLI's spelling of it)
    assert split_by_case(["sub-01", "sub-02", "sub-03"], 0.3, "", 0) == split_by_case(
        ["sub-01", "sub-02", "sub-03"], 0.3, None, 0)
    # UID-named files are cases of their own, not one case cut at the last dot
    uids = ["1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12"]
    assert len(split_by_case(uids, 0.5, None, 0)[1]) == 1


def test_a_split_far_above_the_fraction_is_warned_about():
    from medfuse.train.split import overshoot_warning

    assert overshoot_warning(20, 100, 0.2, 9, r"^(\d{2})") is None
    line = overshoot_warning(72, 80, 0.2, 2, r"^(\d{2})")
    assert line.startswith("warning: 72 of 80 images (90 %)") and "only 2 case(s)" in line
