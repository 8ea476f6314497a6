"""Classic fusion baselines that every fused result is measured against.

Each takes two registered gray images (HxW, any numeric dtype, same scale) and returns a float64
HxW image on that scale. On Harvard CT-MRI the plain pixel maximum beats several published deep
models on MI, SD, SCD, VIF and SSIM, so it is the first baseline to beat.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

PYRAMID_LEVELS = 4
WAVELET = "db2"
WAVELET_LEVELS = 3

# Guided filtering fusion (Li, Kang and Hu, IEEE TIP 2013), with the paper's parameters on images
# scaled to [0, 1]: a 31x31 mean filter (radius 15) splits base from detail; saliency = |Laplacian|
# smoothed by an 11x11 Gaussian (sigma 5); the binary "which source is more salient" map is refined by a guided
# filter with the source as guide, wide and smooth for the base (r 45, eps 0.3), narrow and
# edge-tight for the detail (r 7, eps 1e-6).
GFF_BASE_RADIUS = 15
GFF_SALIENCY_KERNEL = (11, 11)
GFF_SALIENCY_SIGMA = 5.0
GFF_BASE_FILTER = (45, 0.3)
GFF_DETAIL_FILTER = (7, 1e-6)

Baseline = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"baselines fuse two gray images of one shape, got {a.shape} and {b.shape}")
    return a, b


def _pick_max_abs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) >= np.abs(y), x, y)


def pixel_average(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _pair(a, b)
    return 0.5 * (a + b)


def pixel_maximum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _pair(a, b)
    return np.maximum(a, b)


def _laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass layers from fine to coarse, then the low-pass residual last."""
    bands = []
    for _ in range(levels):
        if min(img.shape) < 2:
            break
        down = cv2.pyrDown(img)
        bands.append(img - cv2.pyrUp(down, dstsize=(img.shape[1], img.shape[0])))
        img = down
    return bands + [img]


def _collapse(pyramid: list[np.ndarray]) -> np.ndarray:
    img = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        img = cv2.pyrUp(img, dstsize=(band.shape[1], band.shape[0])) + band
    return img


def laplacian_pyramid(a: np.ndarray, b: np.ndarray, levels: int = PYRAMID_LEVELS) -> np.ndarray:
    """Laplacian pyramid fusion: larger-magnitude detail per band, averaged low-pass base."""
    a, b = _pair(a, b)
    pa, pb = _laplacian_pyramid(a, levels), _laplacian_pyramid(b, levels)
    fused = [_pick_max_abs(x, y) for x, y in zip(pa[:-1], pb[:-1])]
    return _collapse(fused + [0.5 * (pa[-1] + pb[-1])])


def wavelet(a: np.ndarray, b: np.ndarray, name: str = WAVELET, levels: int = WAVELET_LEVELS) -> np.ndarray:
    """Discrete wavelet fusion (PyWavelets): averaged approximation, larger-magnitude details."""
    import pywt  # a bench extra, not a runtime dependency

    a, b = _pair(a, b)
    levels = min(levels, pywt.dwt_max_level(min(a.shape), name)) or 1
    ca, cb = pywt.wavedec2(a, name, level=levels), pywt.wavedec2(b, name, level=levels)
    fused = [0.5 * (ca[0] + cb[0])]
    for da, db in zip(ca[1:], cb[1:]):
        fused.append(tuple(_pick_max_abs(x, y) for x, y in zip(da, db)))
    out = pywt.waverec2(fused, name)
    return out[: a.shape[0], : a.shape[1]]


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter: src smoothed, its edges following those of guide (gray, float64)."""
    mean_g, mean_s = _box(guide, radius), _box(src, radius)
    cov = _box(guide * src, radius) - mean_g * mean_s
    var = _box(guide * guide, radius) - mean_g * mean_g
    a = cov / (var + eps)
    b = mean_s - a * mean_g
    return _box(a, radius) * guide + _box(b, radius)


def _gff_weights(a: np.ndarray, b: np.ndarray, select_a: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Weight of a (b gets 1 - it): the selection map refined by guided filters, renormalised."""
    wa = np.clip(guided_filter(a, select_a, radius, eps), 0, None)
    wb = np.clip(guided_filter(b, 1.0 - select_a, radius, eps), 0, None)
    total = wa + wb
    return np.divide(wa, total, out=np.full_like(wa, 0.5), where=total > 1e-12)


def guided_filter_fusion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """GFF: two-scale fusion whose weights are saliency maps refined by guided filtering."""
    a, b = _pair(a, b)
    scale = max(float(a.max()), float(b.max()), 1e-12)
    a, b = a / scale, b / scale
    base_a, base_b = _box(a, GFF_BASE_RADIUS), _box(b, GFF_BASE_RADIUS)
    sal_a, sal_b = (cv2.GaussianBlur(np.abs(cv2.Laplacian(x, cv2.CV_64F)), GFF_SALIENCY_KERNEL, GFF_SALIENCY_SIGMA)
                    for x in (a, b))
    select_a = np.where(sal_a > sal_b, 1.0, np.where(sal_a < sal_b, 0.0, 0.5))  # ties: both halves
    w_base = _gff_weights(a, b, select_a, *GFF_BASE_FILTER)
    w_detail = _gff_weights(a, b, select_a, *GFF_DETAIL_FILTER)
    base = w_base * base_a + (1 - w_base) * base_b
    detail = w_detail * (a - base_a) + (1 - w_detail) * (b - base_b)
    return (base + detail) * scale


BASELINES: dict[str, Baseline] = {
    "average": pixel_average,
    "maximum": pixel_maximum,
    "laplacian": laplacian_pyramid,
    "wavelet": wavelet,
    "guided-filter": guided_filter_fusion,
}


# One more baseline row that is not a function of the two gray references: the pixel maximum of the
# images the model itself is given (CT window or functional luma, the MRI after its percentile
# normalisation). On Harvard CT-MRI that normalisation alone lifts SD, MI and SCD above the plain
# maximum's, so this row separates what the network adds from what its preprocessing does
# (benchmarks/quality.py computes it from the model's preprocessing settings).
MAXIMUM_OF_INPUTS = "maximum-of-inputs"
BASELINE_NAMES = (*BASELINES, MAXIMUM_OF_INPUTS)


def get_baseline(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}") from None


def fuse_to_uint8(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A baseline's result as the 8-bit image that gets scored (rounded, clipped to 0-255)."""
    return np.clip(np.round(get_baseline(name)(a, b)), 0, 255).astype(np.uint8)
