"""Standard image-fusion quality metrics, as published medical-fusion tables compute them.

Definitions follow the Python evaluator of MMIF-CDDFuse (Zhao et al., CVPR 2023), which most
recent CT-MRI papers cite, so that figures here can be set beside theirs:

- Every image is 8-bit grey, 0-255, and all arithmetic is float64. RGB images (a fused colour
  output, PET/SPECT pseudo-colour) are reduced to BT.601 luma and rounded, as the evaluator's
  `cv2.COLOR_BGR2GRAY` read does. Float input is taken as already on the 0-255 scale.
- EN is in bits (log2), as the evaluator; MI is in nats (natural log, sklearn's
  `mutual_info_score`), as the evaluator. Both over the 256 grey levels.
- SSIM uses a 7x7 uniform window with sample covariance (scikit-image's defaults) and an
  EXPLICIT `data_range`, 255 by default. The published evaluator called scikit-image with float
  images and no `data_range`; scikit-image before 0.26 then took the float dtype's range, 2, which
  leaves the stabilising constants C1, C2 near zero and gives different (lower) figures on images
  with dark flat background. Pass `ssim_data_range=2` to reproduce those tables.
- PSNR = 10 log10(max(F)^2 / MSE), MSE the mean of MSE(F, A) and MSE(F, B); inf when F equals
  both sources.
- Qabf: the evaluator sets the gradient-strength ratio to g_F instead of 1 where g_A == g_F > 0;
  here the ratio is 1 there (the Xydeas-Petrovic definition). The two differ by < 0.06 %.
- SCD: a correlation whose one side is constant is 0 here (the evaluator returns NaN).

One figure is medfuse's own, reported beside the standard ones and never counted as a win:
CTDim, how much a CT-MRI fusion darkens CT's bright structures (bone, calcification). The
standard metrics do not see it, and some reward it: a fusion that averages CT's white bone with
MRI's dark bone scores more entropy and edge transfer (benchmarks/RESULTS.md, seventeenth session).

numpy and OpenCV only: this module is part of the lean runtime (`medfuse-run --metrics`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

METRIC_NAMES = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR")
DEFAULT_SSIM_DATA_RANGE = 255.0
LEVELS = 256
CT_DIM_METRIC = "CTDim"
# CT's "high intensity" pixels as the spec's medical loss term masks them (gray > 0.5): in an
# 8-bit CT, already windowed for display (the Harvard PNGs), bone and calcification.
CT_BRIGHT_LEVEL = 127.5
# A CT in HU (DICOM, NIfTI) is masked in HU instead, since its display window is a choice (mid-grey
# of the default 40/400 window is 40 HU: grey matter): from the calcium threshold up (Agatston's
# 130 HU), so bone, calcification and contrast-filled vessels.
CT_BRIGHT_HU = 130.0

# Xydeas-Petrovic edge-preservation constants (gradient strength g, orientation a).
_QABF_G = (0.9994, -15.0, 0.5)
_QABF_A = (0.9879, -22.0, 0.8)
# The evaluator convolves (scipy convolve2d, kernel flipped) with [[-1,0,1],...] for x and
# [[1,2,1],[0,0,0],[-1,-2,-1]] for y; cv2.filter2D correlates, so these are those kernels flipped.
# The sign of gx matters where it is 0: the angle there is pi/2 whatever the sign of gy.
_SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
_SOBEL_Y = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)
_VIF_NOISE_VAR = 2.0
_VIF_EPS = 1e-10


def to_gray255(image: np.ndarray) -> np.ndarray:
    """An image as float64 grey 0-255: uint8 or float (0-255) input, gray HxW or RGB HxWx3."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 3:
        r, g, b = (arr[:, :, i].astype(np.float64) for i in range(3))
        return np.round(0.299 * r + 0.587 * g + 0.114 * b)
    if arr.ndim != 2:
        raise ValueError(f"expected a gray HxW or RGB HxWx3 image, got shape {arr.shape}")
    return arr.astype(np.float64)


def _levels(img: np.ndarray) -> np.ndarray:
    """Grey levels 0..255 as integers (the histogram bins of EN and MI)."""
    return np.clip(np.round(img), 0, LEVELS - 1).astype(np.intp)


# ---------------------------------------------------------------- single-image metrics
def entropy(img: np.ndarray) -> float:
    """EN: Shannon entropy of the grey-level histogram, in bits."""
    p = np.bincount(_levels(img).ravel(), minlength=LEVELS) / img.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def standard_deviation(img: np.ndarray) -> float:
    """SD: population standard deviation of the grey values."""
    return float(np.std(img))


def spatial_frequency(img: np.ndarray) -> float:
    """SF: sqrt(row frequency^2 + column frequency^2) from neighbour differences."""
    row = np.mean(np.diff(img, axis=1) ** 2)
    col = np.mean(np.diff(img, axis=0) ** 2)
    return float(np.sqrt(row + col))


def average_gradient(img: np.ndarray) -> float:
    """AG: mean of sqrt((gx^2 + gy^2) / 2), central differences inside, one-sided at the edges."""
    gy, gx = np.gradient(img)
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2.0)))


# ---------------------------------------------------------------- reference metrics
def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """MI(X; Y) in nats from the 256x256 joint grey-level histogram."""
    joint = np.zeros((LEVELS, LEVELS), dtype=np.float64)
    np.add.at(joint, (_levels(x).ravel(), _levels(y).ravel()), 1.0)
    joint /= joint.sum()
    px = joint.sum(axis=1, keepdims=True)
    py = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / (px @ py)[nz])))


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
    return float(np.sum(dx * dy) / denom) if denom > 0 else 0.0


def scd(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD: corr(A, F - B) + corr(B, F - A), the sum of the correlations of differences."""
    return _correlation(a, fused - b) + _correlation(b, fused - a)


def psnr(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """PSNR with peak max(F) against the mean of MSE(F, A) and MSE(F, B); inf for a perfect match."""
    mse = 0.5 * (np.mean((fused - a) ** 2) + np.mean((fused - b) ** 2))
    if mse == 0:
        return math.inf
    peak = float(np.max(fused))
    return 10.0 * math.log10(peak * peak / mse) if peak > 0 else -math.inf


def _box(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.blur(img, (size, size), borderType=cv2.BORDER_REFLECT)


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = DEFAULT_SSIM_DATA_RANGE, win: int = 7) -> float:
    """Mean SSIM with a uniform win x win window and sample covariance, borders cropped.

    The same computation as scikit-image's `structural_similarity(x, y, data_range=...)`.
    """
    if data_range <= 0:
        raise ValueError(f"SSIM data_range must be positive, got {data_range}")
    cov_norm = win * win / (win * win - 1.0)
    mx, my = _box(x, win), _box(y, win)
    vx = cov_norm * (_box(x * x, win) - mx * mx)
    vy = cov_norm * (_box(y * y, win) - my * my)
    vxy = cov_norm * (_box(x * y, win) - mx * my)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def _gaussian_window(n: int) -> np.ndarray:
    """MATLAB fspecial('gaussian', n, n / 5) as VIF's reference code builds it."""
    sd = n / 5.0
    half = (n - 1) / 2.0
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    h = np.exp(-(xx * xx + yy * yy) / (2.0 * sd * sd))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def _filter_valid(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D filtering keeping only positions where the kernel fits ('valid'); kernel is symmetric."""
    r = kernel.shape[0] // 2
    out = cv2.filter2D(img, cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT)
    return out[r:-r, r:-r] if r else out


def _vif_scale_terms(ref: np.ndarray, dist: np.ndarray, win: np.ndarray) -> tuple[float, float]:
    mu1, mu2 = _filter_valid(ref, win), _filter_valid(dist, win)
    s1 = np.maximum(_filter_valid(ref * ref, win) - mu1 * mu1, 0)
    s2 = np.maximum(_filter_valid(dist * dist, win) - mu2 * mu2, 0)
    s12 = _filter_valid(ref * dist, win) - mu1 * mu2
    g = s12 / (s1 + _VIF_EPS)
    sv = s2 - g * s12
    flat_ref = s1 < _VIF_EPS
    g[flat_ref], sv[flat_ref], s1[flat_ref] = 0, s2[flat_ref], 0
    flat_dist = s2 < _VIF_EPS
    g[flat_dist], sv[flat_dist] = 0, 0
    neg = g < 0
    sv[neg], g[neg] = s2[neg], 0
    sv = np.maximum(sv, _VIF_EPS)
    num = np.sum(np.log10(1 + g * g * s1 / (sv + _VIF_NOISE_VAR)))
    den = np.sum(np.log10(1 + s1 / _VIF_NOISE_VAR))
    return float(num), float(den)


def vif_single(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain VIF of `dist` against `ref`: 4 scales, Gaussian windows 17/9/5/3, noise var 2."""
    num = den = 0.0
    for scale in range(4):
        win = _gaussian_window(2 ** (4 - scale) + 1)
        if scale > 0 and min(ref.shape) >= win.shape[0]:
            ref = _filter_valid(ref, win)[::2, ::2]
            dist = _filter_valid(dist, win)[::2, ::2]
        if min(ref.shape) < win.shape[0]:
            break  # image smaller than this scale's window: it and the coarser scales carry nothing
        n, d = _vif_scale_terms(ref, dist, win)
        num, den = num + n, den + d
    # A flat reference carries no information; the reference code scores that 1.
    return num / den if den > 0 else 1.0


def vif(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF = VIF(A, F) + VIF(B, F)."""
    return vif_single(a, fused) + vif_single(b, fused)


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient strength and orientation (atan(gy/gx), pi/2 where gx == 0), zero padding."""
    gx = cv2.filter2D(img, cv2.CV_64F, _SOBEL_X, borderType=cv2.BORDER_CONSTANT)
    gy = cv2.filter2D(img, cv2.CV_64F, _SOBEL_Y, borderType=cv2.BORDER_CONSTANT)
    strength = np.sqrt(gx * gx + gy * gy)
    safe_gx = np.where(gx == 0, 1.0, gx)
    angle = np.where(gx == 0, math.pi / 2, np.arctan(gy / safe_gx))
    return strength, angle


def _sigmoid_q(value: np.ndarray, consts: tuple[float, float, float]) -> np.ndarray:
    t, k, d = consts
    return t / (1 + np.exp(k * (value - d)))


def _edge_preservation(g_src, a_src, g_f, a_f) -> np.ndarray:
    lo, hi = np.minimum(g_src, g_f), np.maximum(g_src, g_f)
    ratio = np.divide(lo, hi, out=np.zeros_like(lo), where=hi > 0)
    ratio[(hi > 0) & (lo == hi)] = 1.0
    orient = 1 - np.abs(a_src - a_f) / (math.pi / 2)
    return _sigmoid_q(ratio, _QABF_G) * _sigmoid_q(orient, _QABF_A)


def qabf(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qabf (Xydeas-Petrovic): edge preservation from A and B into F, weighted by source edge strength."""
    ga, aa = _sobel(a)
    gb, ab = _sobel(b)
    gf, af = _sobel(fused)
    weight = np.sum(ga + gb)
    if weight == 0:
        return 0.0
    q = _edge_preservation(ga, aa, gf, af) * ga + _edge_preservation(gb, ab, gf, af) * gb
    return float(np.sum(q) / weight)


def ct_dimming(fused: np.ndarray, ct: np.ndarray, ct_hu: np.ndarray | None = None) -> float:
    """CTDim: mean grey levels (0-255) by which the fusion is darker than the 8-bit CT where CT is
    bright: above mid-grey (CT_BRIGHT_LEVEL), or with the CT's HU values (`ct_hu`, same grid) at
    least CT_BRIGHT_HU. 0 = bone kept as bright as in CT (the pixel maximum). Brighter is not
    counted (MRI's brighter pixels may win there). NaN when the CT has no such pixels."""
    f, c = to_gray255(fused), to_gray255(ct)
    if f.shape != c.shape or (ct_hu is not None and ct_hu.shape != c.shape):
        raise ValueError(f"fused and CT shapes differ: {f.shape}, {c.shape}"
                         + (f", {ct_hu.shape} (HU)" if ct_hu is not None else ""))
    bright = c > CT_BRIGHT_LEVEL if ct_hu is None else ct_hu >= CT_BRIGHT_HU
    if not bright.any():
        return float("nan")
    return float(np.maximum(c[bright] - f[bright], 0.0).mean())


# ---------------------------------------------------------------- all together
def fusion_metrics(
    fused: np.ndarray, a: np.ndarray, b: np.ndarray, *, ssim_data_range: float = DEFAULT_SSIM_DATA_RANGE
) -> dict[str, float]:
    """All ten metrics of a fused image against its two sources (A = CT, B = MRI by convention)."""
    f, a, b = to_gray255(fused), to_gray255(a), to_gray255(b)
    if not f.shape == a.shape == b.shape:
        raise ValueError(f"fused and source shapes differ: {f.shape}, {a.shape}, {b.shape}")
    return {
        "EN": entropy(f),
        "SD": standard_deviation(f),
        "SF": spatial_frequency(f),
        "AG": average_gradient(f),
        "MI": mutual_information(f, a) + mutual_information(f, b),
        "SCD": scd(f, a, b),
        "VIF": vif(f, a, b),
        "Qabf": qabf(f, a, b),
        "SSIM": ssim(f, a, ssim_data_range) + ssim(f, b, ssim_data_range),
        "PSNR": psnr(f, a, b),
    }
