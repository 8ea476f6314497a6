"""The preprocessing contract shared by training, export metadata and the runtime.

`PreprocessConfig` is frozen and serialises to JSON: a checkpoint, the ONNX metadata and the
engine sidecar all carry it, so inference applies exactly the steps training saw.
The transforms themselves (windowing, normalisation, CLAHE, letterbox) live in this module too.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from .dicom_frames import distinct_positions, slice_plane, slice_position, slice_positions
from .errors import MedfuseError
from .image import MedicalImage
from .letterbox import Letterbox, letterbox
from .mixed_grid import check_mixed_placement, is_mixed_pair

__all__ = [
    "CT_WINDOW_PRESETS",
    "Letterbox",
    "PreparedPair",
    "PreprocessConfig",
    "apply_clahe",
    "check_mixed_placement",
    "check_volume_pair",
    "ct_to_unit",
    "letterbox",
    "mri_to_unit",
    "normalize_mri",
    "prepare_pair",
    "to_uint8_image",
    "window_ct",
    "window_preset",
]

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
GRAY_TOLERANCE = 0.01  # mean channel spread, as a fraction of the range, below which RGB counts as gray


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


def window_preset(name: str) -> tuple[float, float]:
    """(centre, width) in HU of a named CT window; an unknown name lists the known ones."""
    if name not in CT_WINDOW_PRESETS:
        raise MedfuseError(f"unknown CT window {name!r}; choose one of {', '.join(CT_WINDOW_PRESETS)}")
    return CT_WINDOW_PRESETS[name]


def check_window(window, what: str = "the CT window") -> tuple[float, float]:
    """(centre, width) in HU as two finite numbers with a positive width, or one MedfuseError."""
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise MedfuseError(f"{what} takes (centre, width) in HU, e.g. (40, 400); got {window!r}") from None
    if not (math.isfinite(center) and math.isfinite(width)):
        raise MedfuseError(f"{what} takes finite numbers, got {window!r}")
    if width <= 0:
        raise MedfuseError(f"{what}'s width must be positive, got {width:g}")
    return center, width


def window_ct(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Hounsfield units -> [0, 1]: clip to centre +- width/2, scale linearly."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = center - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float32) - low) / np.float32(width), 0.0, 1.0)


def normalize_mri(x: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Robust [0, 1] scaling: clip to the low/high percentiles, so a few hot voxels set no scale."""
    x = np.asarray(x, dtype=np.float32)
    return scale_to_unit(x, *percentile_range(x, low, high))


def percentile_range(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The low and high percentiles of x; the maximum as high when the image is nearly empty
    (signal in under 100 - high % of the pixels), so that it is still stretched."""
    lo, hi = np.percentile(x, [low, high])
    if hi <= lo:
        hi = float(x.max())
    return lo, hi


def scale_to_unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """x clipped to [lo, hi] and scaled to [0, 1]; zeros when the range is empty (a flat image)."""
    if hi <= lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / np.float32(hi - lo), 0.0, 1.0)


def apply_clahe(x01: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """OpenCV CLAHE on a [0, 1] gray image, through 8 bits as the spec does; returns [0, 1] float32."""
    img8 = np.round(np.clip(x01, 0.0, 1.0) * 255.0).astype(np.uint8)
    enhanced = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles))).apply(img8)
    return enhanced.astype(np.float32) / np.float32(255.0)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2GRAY)


def _stretch(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi <= lo else (x - lo) / np.float32(hi - lo)


def is_coloured(rgb: np.ndarray) -> bool:
    """RGB whose channels differ (a colour map, a screenshot), not gray saved as colour; JPEG's
    blurred chroma stays under the tolerance."""
    spread = float(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean())
    return spread > GRAY_TOLERANCE * max(float(np.ptp(rgb)), 1e-6)


def ct_to_unit(ct: MedicalImage, cfg: PreprocessConfig, colour_ok: bool = False) -> np.ndarray:
    """A CT image -> (H, W) float32 in [0, 1].

    HU input is windowed. 8-bit files are already windowed for display (Harvard PNGs), so /255.
    Other depths (16-bit PNG/TIFF, non-HU DICOM) carry no standard scale and are stretched
    min..max. RGB CT that is gray saved as colour is reduced to its luma; a coloured one is refused
    unless `colour_ok` (pretraining's visible image, reduced to its luma by design).
    """
    if ct.is_rgb and not colour_ok and is_coloured(ct.pixels):
        raise MedfuseError("the CT is a colour image; a CT-MRI model takes grayscale CT (is it a PET/SPECT map? "
                           "fuse it with a pet-mri or spect-mri model)", ct.path)
    pixels = _luma(ct.pixels) if ct.is_rgb else ct.pixels
    if ct.is_hu:
        return window_ct(pixels, cfg.ct_window_center, cfg.ct_window_width)
    if ct.bit_depth == 8:
        return np.clip(pixels / np.float32(255.0), 0.0, 1.0)
    return _stretch(pixels)


def mri_to_unit(mri: MedicalImage, cfg: PreprocessConfig) -> np.ndarray:
    """An MRI image -> (H, W) float32 in [0, 1] by percentile clipping.

    RGB whose channels are (nearly: JPEG blurs chroma) equal is gray saved as colour and is
    accepted; a truly coloured image is refused, since its signal sits in the hue (a PET/SPECT
    map, a screenshot) and gray would lose it.
    """
    pixels = mri.pixels
    if mri.is_rgb:
        if is_coloured(pixels):
            raise MedfuseError("the MRI is a colour image; MRI input must be grayscale (is it a PET/SPECT map?)", mri.path)
        pixels = pixels.mean(axis=-1)
    return normalize_mri(pixels, cfg.mri_percentile_low, cfg.mri_percentile_high)


@dataclass
class PreparedPair:
    """Model input for one registered pair, and how to map the output back."""

    ct: np.ndarray  # [3, S, S] float32 in [0, 1] (a functional image: its luma, repeated)
    mri: np.ndarray  # [1, S, S] float32 in [0, 1]
    geometry: Letterbox
    chroma: np.ndarray | None = None  # functional pairs: the source's (H, W, 2) Cr, Cb at the original size


def _shape_text(img: MedicalImage) -> str:
    return "x".join(str(n) for n in img.pixels.shape)


def _pair_error(ct: MedicalImage, mri: MedicalImage, what: str) -> MedfuseError:
    return MedfuseError(
        f"CT {ct.path} ({_shape_text(ct)}) and MRI {mri.path} ({_shape_text(mri)}) {what}; "
        "a registered pair must share one pixel grid (medfuse does not resample)"
    )


def check_pair_geometry(ct: MedicalImage, mri: MedicalImage) -> None:
    """Refuse a pair whose size, spacing or (NIfTI/DICOM) placement differ; no silent resampling."""
    for img in (ct, mri):
        if img.is_volume:
            raise MedfuseError("is a volume; fuse it slice by slice (MedicalImage.slice)", img.path)
    check_mixed_placement(ct, mri)
    if ct.height_width != mri.height_width:
        raise _pair_error(ct, mri, "differ in size")
    if ct.spacing and mri.spacing and not np.allclose(ct.spacing, mri.spacing, rtol=1e-3):
        raise _pair_error(ct, mri, f"differ in pixel spacing ({ct.spacing} vs {mri.spacing} mm)")
    if ct.affine is not None and mri.affine is not None:
        same_slice = (ct.slice_axis, ct.slice_index) == (mri.slice_axis, mri.slice_index)
        if not same_slice or not np.allclose(ct.affine, mri.affine, atol=1e-3):
            raise _pair_error(ct, mri, "differ in NIfTI geometry (affine or slice)")
    planes = [slice_plane(img) for img in (ct, mri)]
    if all(planes) and not np.allclose(planes[0].orientation, planes[1].orientation, atol=1e-3):
        raise _pair_error(ct, mri, "differ in DICOM ImageOrientationPatient")
    check_same_patient_and_slice(ct, mri)


def check_volume_pair(ct: MedicalImage, mri: MedicalImage) -> None:
    """Two volumes fused (or trained on) slice by slice: as many slices, each at its own position.
    A series holding several echoes, phases or repeats per position would pair the wrong slices."""
    if ct.depth != mri.depth:
        raise MedfuseError(f"CT {ct.path} has {ct.depth} slices and MRI {mri.path} has {mri.depth}; "
                           "a registered volume pair must have the same slices")
    if is_mixed_pair(ct, mri):  # before any slice is fused: the first and last slices place the whole stack
        for index in sorted({0, ct.depth - 1}):
            check_mixed_placement(ct.slice(index), mri.slice(index))
    for volume in (ct, mri):
        positions = slice_positions(volume)
        if positions is None or None in positions:
            continue  # not a DICOM volume, or not every slice says where it is
        distinct = distinct_positions(positions)
        if distinct < volume.depth:
            raise MedfuseError(f"has {volume.depth} slices at only {distinct} positions (several echoes, phases or "
                               "repeats in one series?); give a series with one slice per position", volume.path)


def check_same_patient_and_slice(ct: MedicalImage, mri: MedicalImage) -> None:
    """DICOM pairs: one patient, and (in one frame of reference) one slice position. The fused
    image is filed under the CT's patient and references both sources."""
    a, b = (img.datasets[0] if img.datasets else None for img in (ct, mri))
    if a is None or b is None:
        return
    ids = [str(ds.get("PatientID", "") or "").strip() for ds in (a, b)]
    if all(ids) and ids[0] != ids[1]:
        raise MedfuseError(f"CT {ct.path} and MRI {mri.path} belong to different patients "
                           f"(PatientID {ids[0]!r} and {ids[1]!r})")
    frame = a.get("FrameOfReferenceUID")
    if not frame or frame != b.get("FrameOfReferenceUID"):
        return  # positions in different frames of reference are not comparable
    plane, mri_position = slice_plane(ct), slice_position(mri)  # an enhanced file's from the slice's frame
    if plane is None or plane.position is None or mri_position is None:
        return
    along = [float(np.dot(position, plane.normal)) for position in (plane.position, mri_position)]
    thickness = plane.thickness or 0.0
    if abs(along[0] - along[1]) > max(0.5 * thickness, 0.1):
        raise _pair_error(ct, mri, f"are different slices ({along[0]:.1f} and {along[1]:.1f} mm along the "
                                   "slice normal, one frame of reference)")


# DICOM Modality values each input of a pair may have; other known ones mean the wrong file.
EXPECTED_MODALITIES = {"ct-mri": ({"CT"}, {"MR"}), "pet-mri": ({"PT"}, {"MR"}), "spect-mri": ({"NM", "ST"}, {"MR"})}
KNOWN_MODALITIES = {"CT", "MR", "PT", "NM", "ST"}


def check_pair_modalities(first: MedicalImage, mri: MedicalImage, modality_pair: str) -> None:
    """Refuse DICOM inputs whose Modality says they are in the wrong place (swapped arguments, a
    CT given to a PET model). Unknown or missing modalities (PNG, NIfTI, 'OT') are not judged."""
    expected = EXPECTED_MODALITIES.get(modality_pair)
    if expected is None:
        return
    roles = (modality_pair.split("-")[0].upper(), "MRI")
    for img, allowed, role in ((first, expected[0], roles[0]), (mri, expected[1], roles[1])):
        found = (img.modality or "").upper()
        if found in KNOWN_MODALITIES and found not in allowed:
            raise MedfuseError(f"is a {found} image (DICOM Modality) but was given as the {role} input of a "
                               f"{modality_pair} model (arguments swapped?)", img.path)


def _first_to_unit(img: MedicalImage, cfg: PreprocessConfig, modality_pair: str,
                   colour_ok: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The first image of a pair in [0, 1], and for a functional pair the chroma to restore."""
    from .modality import is_functional  # noqa: PLC0415 (functional.py imports this module)

    if not is_functional(modality_pair):
        return ct_to_unit(img, cfg, colour_ok), None
    from .color import split_luma_chroma  # noqa: PLC0415
    from .functional import functional_rgb  # noqa: PLC0415

    return split_luma_chroma(functional_rgb(img))


def prepare_pair(ct: MedicalImage, mri: MedicalImage, cfg: PreprocessConfig,
                 modality_pair: str = "ct-mri", colour_first: bool = False) -> PreparedPair:
    """Check a registered 2D pair and turn it into model input (CT 3 channels, MRI 1).

    For a functional pair (pet-mri, spect-mri) `ct` is the PET/SPECT image: its luma takes the
    CT's place and its chroma is kept in `PreparedPair.chroma` for `to_uint8_image`.
    `colour_first`: the first image may be colour and is reduced to its luma (visible-infrared
    pretraining); otherwise a coloured CT is refused.
    """
    check_pair_geometry(ct, mri)
    check_pair_modalities(ct, mri, modality_pair)
    (ct01, chroma), mri01 = _first_to_unit(ct, cfg, modality_pair, colour_first), mri_to_unit(mri, cfg)
    if cfg.clahe:
        ct01 = apply_clahe(ct01, cfg.clahe_clip_limit, cfg.clahe_tile_grid)
        mri01 = apply_clahe(mri01, cfg.clahe_clip_limit, cfg.clahe_tile_grid)
    ct_sq, geometry = letterbox(ct01, cfg.input_size, cfg.interpolation)
    mri_sq = geometry.apply(mri01)
    return PreparedPair(
        ct=np.repeat(ct_sq[None], 3, axis=0).astype(np.float32),
        mri=mri_sq[None].astype(np.float32),
        geometry=geometry,
        chroma=chroma,
    )


def to_uint8_image(fused: np.ndarray, geometry: Letterbox, chroma: np.ndarray | None = None) -> np.ndarray:
    """Model output [3, S, S] (or [1, S, S]) in [0, 1] -> uint8 (H, W, 3) at the original size.

    With `chroma` (a functional pair's), the output's luma is restored to the original size and
    coloured with the functional image's chroma, so the fused image keeps its colour map.
    """
    if fused.ndim != 3 or fused.shape[0] not in (1, 3):
        raise ValueError(f"expected a [3, S, S] or [1, S, S] array, got shape {fused.shape}")
    if chroma is not None:
        from .color import luma_of_channels, merge_luma_chroma  # noqa: PLC0415

        luma = np.clip(geometry.restore(np.ascontiguousarray(luma_of_channels(fused))), 0.0, 1.0)
        return np.round(merge_luma_chroma(luma, chroma) * 255.0).astype(np.uint8)
    chw = np.repeat(fused, 3, axis=0) if fused.shape[0] == 1 else fused
    restored = geometry.restore(np.ascontiguousarray(np.transpose(chw, (1, 2, 0)), dtype=np.float32))
    return np.round(np.clip(restored, 0.0, 1.0) * 255.0).astype(np.uint8)
