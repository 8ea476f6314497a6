"""The preprocessing contract shared by training, export metadata and the runtime.

`PreprocessConfig` is frozen and serialises to JSON: a checkpoint, the ONNX metadata and the
engine sidecar all carry it, so inference applies exactly the steps training saw.
The transforms themselves (windowing, normalisation, CLAHE, letterbox) live in this module too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

# Named CT windows (centre, width) in Hounsfield units, as radiology viewers label them.
CT_WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "default": (40.0, 400.0),  # spec default
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (600.0, 2800.0),
    "soft-tissue": (50.0, 350.0),
}

INTERPOLATIONS = ("area", "linear", "cubic", "nearest")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a CT/MRI pair becomes model input. Every field has the spec's default."""

    input_size: int = 256  # square model input side; images are letterboxed to it (multiple of 32)
    ct_window_center: float = 40.0  # HU; applied only when the CT carries Hounsfield units
    ct_window_width: float = 400.0  # HU
    mri_percentile_low: float = 0.5  # robust MRI normalisation: clip to these percentiles...
    mri_percentile_high: float = 99.5  # ...then scale to [0, 1]
    clahe: bool = False  # OpenCV CLAHE on both images after normalisation (spec: optional)
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8  # tiles per side (8 -> 8x8)
    interpolation: str = "area"  # resize method when letterboxing: area, linear, cubic, nearest

    def __post_init__(self) -> None:
        if self.input_size <= 0 or self.input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {self.input_size}")
        if self.ct_window_width <= 0:
            raise ValueError(f"ct_window_width must be positive, got {self.ct_window_width}")
        if not 0 <= self.mri_percentile_low < self.mri_percentile_high <= 100:
            raise ValueError("MRI percentiles must satisfy 0 <= low < high <= 100")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")

    def with_window(self, center: float, width: float) -> PreprocessConfig:
        return PreprocessConfig(**{**asdict(self), "ct_window_center": center, "ct_window_width": width})

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing fields: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> PreprocessConfig:
        return cls.from_dict(json.loads(text))
