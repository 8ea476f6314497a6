"""Train/validation split by case, never by slice.

Neighbouring slices of one patient are nearly identical images: if some sit in training and
others in validation, the validation loss measures memory, not generalisation. A case is read
from the file name with a regular expression (Harvard: the first two digits); without one,
every file is its own case (RoadScene frames).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.pairing import file_stem

HARVARD_CASE_REGEX = r"^(\d{2})"


def case_regex_option(text: str) -> str | None:
    """--case-regex as typed: '' or 'none' mean every file is its own case (None)."""
    return None if text.strip().lower() in ("", "none") else text


def _pattern(case_regex: str) -> re.Pattern:
    try:
        return re.compile(case_regex)
    except re.error as err:
        raise MedfuseError(f"--case-regex '{case_regex}' is not a valid regular expression ({err})") from None


def case_of(name: str, case_regex: str | None) -> str:
    """The case key of one file stem: the regex's first group (or whole match), else the stem."""
    if not case_regex:  # None or "": every file is its own case
        return name
    match = _pattern(case_regex).search(name)
    if match is None:
        raise MedfuseError(
            f"file name does not match --case-regex '{case_regex}'; give a pattern whose first group is "
            r"the patient (e.g. '^(sub-\d+)' for sub-01...), or '' to make every file its own case", name)
    return match.group(1) if match.groups() else match.group(0)


def group_by_case(names: Sequence[str], case_regex: str | None) -> dict[str, list[str]]:
    cases: dict[str, list[str]] = {}
    for name in names:
        cases.setdefault(case_of(file_stem(Path(name)), case_regex), []).append(name)
    return cases


def overshoot_warning(n_val: int, n_total: int, val_fraction: float, n_cases: int,
                      case_regex: str | None) -> str | None:
    """A line for the log when whole cases held out far more than `val_fraction` (a few large cases,
    or a case regex that lumps patients together: the first two digits of names 001..010)."""
    if n_total == 0 or n_val / n_total <= max(2 * val_fraction, val_fraction + 0.15):
        return None
    return (f"warning: {n_val} of {n_total} images ({100 * n_val / n_total:.0f} %) are held out for validation, "
            f"far above --val-fraction {val_fraction:g}: the files form only {n_cases} case(s) under "
            f"--case-regex '{case_regex or ''}'{' (every file its own case)' if not case_regex else ''}; "
            "check that its first group is the patient")


def split_by_case(
    names: Sequence[str], val_fraction: float, case_regex: str | None, seed: int, folder: Path | None = None
) -> tuple[list[str], list[str]]:
    """Hold out whole cases until at least `val_fraction` of the files are in validation.

    Deterministic for a seed: cases are sorted before the seeded shuffle, so the order of `names`
    does not matter. With val_fraction 0 the validation list is empty. `folder` (where the names
    come from) is named in the error when there are too few cases.
    """
    if not 0 <= val_fraction < 1:
        raise MedfuseError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return sorted(names), []  # no split: the names need no case key
    cases = group_by_case(names, case_regex)
    if len(cases) < 2:
        regex = "none: every file is a case" if case_regex is None else f"'{case_regex}'"
        raise MedfuseError(
            f"a validation split needs at least 2 cases, found {len(cases)} "
            f"(--case-regex {regex}; or set --val-fraction 0)", folder
        )
    order = sorted(cases)
    random.Random(seed).shuffle(order)
    target = val_fraction * len(names)
    val_cases: list[str] = []
    held = 0
    # Always leave at least one case for training.
    for key in order[:-1]:
        if held >= target:
            break
        val_cases.append(key)
        held += len(cases[key])
    val = sorted(n for key in val_cases for n in cases[key])
    train = sorted(n for key in order if key not in val_cases for n in cases[key])
    return train, val
