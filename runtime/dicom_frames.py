"""Per-slice DICOM attributes wherever a file keeps them, and where a slice lies in the patient.

A classic file keeps Image Plane attributes (orientation, position, thickness, spacing) and the
rescale at the top level. An enhanced multi-frame file keeps them in functional groups, each
frame's own or one shared by all (PS3.3 C.7.6.16); a top-level value some vendors add there holds
for one frame at most. The readers, the pair check, the NIfTI affine and the fused DICOM's
geometry all read through this module, so a slice is placed the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .image import MedicalImage

# The functional group that holds each Image Plane attribute in an enhanced file.
PLANE_GROUPS = {
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "ImagePositionPatient": "PlanePositionSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "SpacingBetweenSlices": "PixelMeasuresSequence",
    "PixelSpacing": "PixelMeasuresSequence",
}


def group_item(ds: Dataset, sequence: str, frame: int | None = None) -> Dataset | None:
    """An enhanced (multi-frame) file's functional group item: the frame's own, else the shared
    one (PS3.3 C.7.6.16); None for classic files."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        if index is None or groups not in ds or len(ds[groups].value) <= index:
            continue
        item = ds[groups].value[index]
        if sequence in item and item[sequence].value:
            return item[sequence].value[0]
    return None


def frame_count(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def has_frames(ds: Dataset) -> bool:
    """A multi-frame file, or an enhanced one (functional groups) even when it holds one frame."""
    return frame_count(ds) > 1 or "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def first_frame(ds: Dataset) -> int | None:
    """The frame to read a file's first (or only) slice from: 0 in a multi-frame or enhanced file,
    None in a classic one (whose attributes are at the top level)."""
    return 0 if has_frames(ds) else None


def plane_value(ds: Dataset, frame: int | None, key: str) -> Any:
    """An Image Plane attribute (a key of PLANE_GROUPS) of one frame (None: a classic file): the
    frame's own or the shared functional group first, then the top level; None when absent. A
    top-level ImagePositionPatient is never taken for a frame after the first: it is one frame's."""
    group = PLANE_GROUPS[key]
    item = group_item(ds, group, frame) if frame is not None else None
    if item is not None and item.get(key) not in (None, ""):
        return item.get(key)
    top_level_holds = not (key == "ImagePositionPatient" and frame is not None and frame > 0)
    if top_level_holds and key in ds and ds[key].value not in (None, ""):
        return ds[key].value
    item = group_item(ds, group)
    return item.get(key) if item is not None else None


def slice_source(image: MedicalImage, index: int = 0) -> tuple[Dataset, int | None] | None:
    """The header of slice `index` of a volume (of the image itself when 2D) and, for a
    multi-frame or enhanced file, its frame (0-based); None when the image has no DICOM header."""
    if not image.datasets:
        return None
    ds = image.datasets[min(index, len(image.datasets) - 1)]
    if frame_count(ds) == 1:  # a classic file, or a one-frame enhanced one (alone or one of a series)
        return ds, first_frame(ds)
    return ds, (index if image.is_volume else image.slice_index or 0)


@dataclass(frozen=True)
class SlicePlane:
    """Where one slice lies in the patient (LPS, mm)."""

    orientation: np.ndarray  # (6,) direction cosines of a row, then of a column
    position: np.ndarray | None  # (3,) centre of the first pixel
    thickness: float | None  # SliceThickness, mm

    @property
    def normal(self) -> np.ndarray:
        return _normal(self.orientation)


def _floats(value: Any, count: int) -> np.ndarray | None:
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (count,) and np.isfinite(array).all() else None


def _orientation(source: tuple[Dataset, int | None]) -> np.ndarray | None:
    return _floats(plane_value(*source, "ImageOrientationPatient") or (), 6)


def _normal(orientation: np.ndarray) -> np.ndarray:
    return np.cross(orientation[:3], orientation[3:])


def _position(source: tuple[Dataset, int | None]) -> np.ndarray | None:
    return _floats(plane_value(*source, "ImagePositionPatient") or (), 3)


def slice_position(image: MedicalImage, index: int = 0) -> np.ndarray | None:
    """ImagePositionPatient of slice `index` (of the image when 2D), even without an orientation."""
    source = slice_source(image, index)
    return _position(source) if source is not None else None


def slice_plane(image: MedicalImage, index: int = 0) -> SlicePlane | None:
    """The plane of slice `index` (of the image when 2D); None without a usable orientation."""
    source = slice_source(image, index)
    if source is None:
        return None
    orientation = _orientation(source)
    if orientation is None:
        return None
    thickness = plane_value(*source, "SliceThickness")
    return SlicePlane(orientation, _position(source), float(thickness) if thickness not in (None, "") else None)


# ---- positions along the slice normal ----------------------------------------------------

POSITION_TOLERANCE_MM = 0.01  # slices closer than this along the normal are at one position


def positions_along_normal(sources: list[tuple[Dataset, int | None]]) -> list[float | None] | None:
    """Each (header, frame)'s position along the first one's slice normal (None for one without a
    position); None when the first has no orientation."""
    orientation = _orientation(sources[0]) if sources else None
    if orientation is None:
        return None
    normal = _normal(orientation)
    return [None if p is None else float(np.dot(normal, p)) for p in map(_position, sources)]


def frame_positions(ds: Dataset) -> list[float | None] | None:
    """Each frame's position in a multi-frame file."""
    return positions_along_normal([(ds, i) for i in range(frame_count(ds))])


def file_positions(datasets: list[Dataset]) -> list[float | None] | None:
    """Each file's position in a series (one slice per file; enhanced one-frame files too)."""
    return positions_along_normal([(ds, first_frame(ds)) for ds in datasets])


def slice_positions(volume: MedicalImage) -> list[float | None] | None:
    """Each slice's position in a DICOM volume (a series' files or an enhanced file's frames)."""
    sources = [slice_source(volume, index) for index in range(volume.depth)]
    return None if None in sources else positions_along_normal(sources)


def distinct_positions(positions: list[float]) -> int:
    """How many positions there are, those closer than POSITION_TOLERANCE_MM counting as one."""
    ordered = sorted(positions)
    return len(ordered) and 1 + sum(b - a > POSITION_TOLERANCE_MM for a, b in zip(ordered, ordered[1:]))
