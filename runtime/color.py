"""Colour transforms of functional fusion: luma and chroma (YCbCr, BT.601), colour maps, chroma error.

Images here are float32 RGB in [0, 1] unless a name says uint8. The split is OpenCV's
`COLOR_RGB2YCrCb` (BT.601 full range, as JPEG): Y = 0.299 R + 0.587 G + 0.114 B, the same luma
the fusion metrics read, and chroma kept in OpenCV's channel order (Cr, Cb), centred on 0.5.
numpy and OpenCV only: this is part of the lean runtime.
"""

from __future__ import annotations

import cv2
import numpy as np

COLORMAPS = {"hot": cv2.COLORMAP_HOT, "jet": cv2.COLORMAP_JET, "inferno": cv2.COLORMAP_INFERNO}
# Where the source shows tracer: luma above this (0-255 scale). Pseudo-colour maps draw no uptake
# black, so this keeps the coloured region and leaves the black background out.
UPTAKE_LUMA = 25.0
CHROMA_METRIC = "ChromaErr"  # chroma_error as medfuse-bench and medfuse-run --metrics name it


def _rgb01(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0), dtype=np.float32)


def split_luma_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB (uint8, or float in [0, 1]) -> luma (H, W) and chroma (H, W, 2: Cr, Cb), float32 in [0, 1]."""
    ycrcb = cv2.cvtColor(_rgb01(rgb), cv2.COLOR_RGB2YCrCb)
    return np.ascontiguousarray(ycrcb[..., 0]), np.ascontiguousarray(ycrcb[..., 1:])


def merge_luma_chroma(luma: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Luma (H, W) and chroma (H, W, 2: Cr, Cb) in [0, 1] -> RGB float32 (H, W, 3) clipped to [0, 1]."""
    if luma.shape != chroma.shape[:2] or chroma.shape[-1:] != (2,):
        raise ValueError(f"luma {luma.shape} and chroma {chroma.shape} do not form one YCrCb image")
    ycrcb = np.concatenate([np.asarray(luma, np.float32)[..., None], np.asarray(chroma, np.float32)], axis=-1)
    return np.clip(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB), 0.0, 1.0)


def luma_of_channels(chw: np.ndarray) -> np.ndarray:
    """Gray (S, S) of a [3, S, S] (BT.601) or [1, S, S] array, e.g. the network's fused output."""
    if chw.shape[0] == 1:
        return np.asarray(chw[0], np.float32)
    r, g, b = (np.asarray(c, np.float32) for c in chw[:3])
    return np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b


def colorize(gray01: np.ndarray, colormap: str = "hot") -> np.ndarray:
    """A gray [0, 1] map -> pseudo-colour RGB float32 in [0, 1] through an OpenCV colour map."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colour map {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    gray8 = np.round(np.clip(gray01, 0.0, 1.0) * 255.0).astype(np.uint8)
    bgr = cv2.applyColorMap(gray8, COLORMAPS[colormap])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255.0)


def uptake_mask(source_rgb: np.ndarray, threshold: float = UPTAKE_LUMA) -> np.ndarray:
    """Pixels of a functional source image where it shows tracer: luma (0-255) above `threshold`."""
    luma, _ = split_luma_chroma(source_rgb)
    return luma * 255.0 > threshold


def chroma_error(fused_rgb: np.ndarray, source_rgb: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute Cr/Cb difference (0-255 scale) between a fused image and its functional source,
    inside `mask` (default: the source's uptake region). 0 = the colour map is kept exactly."""
    _, fused = split_luma_chroma(fused_rgb)
    _, source = split_luma_chroma(source_rgb)
    mask = uptake_mask(source_rgb) if mask is None else np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    return float(np.abs(fused[mask] - source[mask]).mean() * 255.0)
