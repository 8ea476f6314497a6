"""Fusion metrics on inputs whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfuse.runtime import metrics as M


@pytest.fixture
def textured() -> np.ndarray:
    """A smooth-plus-noise 64x64 image on the 0-255 scale (integer grey levels)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    base = 100 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    return np.clip(np.round(base + rng.normal(0, 8, base.shape)), 0, 255)


@pytest.fixture
def other(textured) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.clip(np.round(255 - textured + rng.normal(0, 20, textured.shape)), 0, 255)


def two_level() -> np.ndarray:
    img = np.zeros((8, 8))
    img[:, 4:] = 255
    return img


def test_entropy_known_values():
    assert M.entropy(two_level()) == pytest.approx(1.0)  # bits
    assert M.entropy(np.full((5, 5), 17.0)) == 0.0
    assert M.entropy(np.arange(256, dtype=float).reshape(16, 16)) == pytest.approx(8.0)


def test_sd_sf_ag_known_values():
    assert M.standard_deviation(two_level()) == pytest.approx(127.5)
    stripes = np.tile([0.0, 10.0], (6, 3))  # every horizontal neighbour differs by 10
    assert M.spatial_frequency(stripes) == pytest.approx(10.0)
    ramp = np.tile(np.arange(20.0) * 4, (10, 1))  # gx = 4 everywhere, gy = 0
    assert M.average_gradient(ramp) == pytest.approx(4 / math.sqrt(2))


def test_mutual_information_of_identical_is_entropy_in_nats(textured):
    assert M.mutual_information(textured, textured) == pytest.approx(M.entropy(textured) * math.log(2))
    assert M.mutual_information(two_level(), two_level()) == pytest.approx(math.log(2))


def test_mutual_information_of_independent_images_is_near_zero():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (256, 256)).astype(float)
    y = rng.integers(0, 4, (256, 256)).astype(float)
    assert 0 <= M.mutual_information(x, y) < 1e-3


def test_ssim_identity_and_data_range_changes_the_value(textured, other):
    assert M.ssim(textured, textured) == pytest.approx(1.0)
    noisy = np.clip(textured + np.random.default_rng(2).normal(0, 15, textured.shape), 0, 255)
    at_255, at_2 = M.ssim(textured, noisy, 255.0), M.ssim(textured, noisy, 2.0)
    assert 0 < at_2 < at_255 < 1  # the tiny constants of data_range=2 score lower
    with pytest.raises(ValueError):
        M.ssim(textured, noisy, 0)


def test_ssim_matches_scikit_image_when_available(textured, other):
    skm = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed here (optional cross-check)")
    for rng in (255.0, 2.0):
        ref = skm.structural_similarity(textured, other, data_range=rng, win_size=7)
        assert M.ssim(textured, other, rng) == pytest.approx(ref, abs=1e-9)


def test_ssim_matches_a_direct_window_computation(textured, other):
    win = np.lib.stride_tricks.sliding_window_view
    wx, wy = win(textured, (7, 7)), win(other, (7, 7))
    mx, my = wx.mean((2, 3)), wy.mean((2, 3))
    vx, vy = wx.var((2, 3), ddof=1), wy.var((2, 3), ddof=1)
    vxy = ((wx - mx[..., None, None]) * (wy - my[..., None, None])).sum((2, 3)) / 48
    c1, c2 = 2.55**2, 7.65**2
    direct = (((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    assert M.ssim(textured, other) == pytest.approx(direct, abs=1e-12)


def test_psnr_identical_is_inf_and_known_offset():
    a = np.full((4, 4), 100.0)
    assert M.psnr(a, a, a) == math.inf
    b = a + 10  # MSE(F,A)=0, MSE(F,B)=100 -> mean 50; peak = max(F) = 100
    assert M.psnr(a, a, b) == pytest.approx(10 * math.log10(100**2 / 50))


def test_scd_of_sum_is_two(textured, other):
    assert M.scd(textured + other, textured, other) == pytest.approx(2.0)
    assert M.scd(textured, textured, textured) == 0.0  # constant difference: no correlation


def test_vif_of_identical_is_one_and_flat_reference_scores_one(textured):
    assert M.vif_single(textured, textured) == pytest.approx(1.0, abs=1e-6)
    assert M.vif_single(np.full((64, 64), 50.0), textured) == 1.0
    assert M.vif_single(textured, np.full((64, 64), 50.0)) == pytest.approx(0.0)


def test_qabf_perfect_and_flat(textured, other):
    perfect = (0.9994 / (1 + math.exp(-15 * 0.5))) * (0.9879 / (1 + math.exp(-22 * 0.2)))
    assert M.qabf(textured, textured, textured) == pytest.approx(perfect)
    assert M.qabf(np.zeros_like(textured), textured, other) < 0.01  # no edge of A or B survives


def test_small_images_stop_vif_at_the_scale_that_fits(textured, other):
    assert M.vif_single(textured[:16, :16], textured[:16, :16]) == 1.0  # no scale fits: flat-reference rule
    v = M.vif_single(textured[:24, :24], other[:24, :24])  # only the finest scale fits
    assert np.isfinite(v)
    assert all(np.isfinite(x) for x in M.fusion_metrics(textured[:10, :10], textured[:10, :10], other[:10, :10]).values())


def test_luma_of_rgb_follows_bt601():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    assert np.all(M.to_gray255(rgb) == 76)  # round(0.299 * 255)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(M.to_gray255(np.dstack([gray] * 3)), gray.astype(float))


def test_fusion_metrics_keys_and_sums(textured, other):
    res = M.fusion_metrics(textured.astype(np.uint8), textured.astype(np.uint8), other.astype(np.uint8))
    assert tuple(res) == M.METRIC_NAMES
    h_nats = M.entropy(textured) * math.log(2)
    assert res["MI"] == pytest.approx(h_nats + M.mutual_information(textured, other))
    assert res["SSIM"] == pytest.approx(1.0 + M.ssim(textured, other))
    assert res["VIF"] == pytest.approx(1.0 + M.vif_single(other, textured), abs=1e-6)
    assert M.fusion_metrics(textured, textured, other, ssim_data_range=2.0)["SSIM"] != res["SSIM"]
    with pytest.raises(ValueError):
        M.fusion_metrics(textured, textured[:10], other)


def test_colour_fused_scores_as_its_luma(textured, other):
    rgb = np.dstack([textured] * 3).astype(np.uint8)
    assert M.fusion_metrics(rgb, textured, other) == M.fusion_metrics(textured, textured, other)


def test_pixel_maximum_beats_average_on_real_pair(shared_data):
    import cv2

    d = shared_data / "harvard-ct-mri" / "train"
    ct = cv2.imread(str(d / "CT" / "16003.png"), cv2.IMREAD_GRAYSCALE)
    mri = cv2.imread(str(d / "MRI" / "16003.png"), cv2.IMREAD_GRAYSCALE)
    mx = M.fusion_metrics(np.maximum(ct, mri), ct, mri)
    avg = M.fusion_metrics(np.round((ct.astype(float) + mri) / 2), ct, mri)
    for name in ("SD", "SCD", "VIF", "Qabf"):
        assert mx[name] > avg[name], name


def _evaluator_sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CDDFuse evaluator's Qabf gradients, written out: scipy.signal.convolve2d(mode='same')
    with h3 = [[-1,0,1],[-2,0,2],[-1,0,1]] (x) and h1 = [[1,2,1],[0,0,0],[-1,-2,-1]] (y), zero padded.
    A convolution flips its kernel: sum over (i, j) of k[i, j] * img[y + 1 - i, x + 1 - j]."""
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)
    padded = np.pad(img.astype(float), 1)
    rows, cols = img.shape

    def convolve(k: np.ndarray) -> np.ndarray:
        return sum(k[i, j] * padded[2 - i:2 - i + rows, 2 - j:2 - j + cols] for i in range(3) for j in range(3))

    gx, gy = convolve(h3), convolve(h1)
    angle = np.where(gx == 0, math.pi / 2, np.arctan(gy / np.where(gx == 0, 1.0, gx)))
    return np.sqrt(gx * gx + gy * gy), angle


def test_qabf_gradients_follow_the_evaluator_sign_convention(textured, other, monkeypatch):
    """cv2.filter2D correlates where the evaluator convolves: with the x kernel unflipped, the
    orientation differed wherever gx == 0 (0.7321 instead of 0.6948 on a step edge)."""
    step = np.zeros((5, 5))
    step[2:] = 100
    fused = step.copy()
    fused[:, 3:] += 30
    flat_band = textured.copy()
    flat_band[:, 20:30] = 0  # flat regions: gx == 0 there
    cases = [(fused, step, np.zeros((5, 5))), (flat_band, textured, other)]
    ours = [M.qabf(*case) for case in cases]
    monkeypatch.setattr(M, "_sobel", _evaluator_sobel)
    reference = [M.qabf(*case) for case in cases]
    assert ours == pytest.approx(reference, abs=1e-12)


def test_ct_dimming_counts_only_darkened_bright_ct():
    ct = np.zeros((8, 8), np.uint8)
    ct[:, :2] = 250  # bone: 16 pixels above mid-grey
    ct[:, 2:4] = 120  # soft tissue, below the level: not counted
    mri = np.full((8, 8), 60, np.uint8)
    assert M.ct_dimming(np.maximum(ct, mri), ct) == 0.0
    assert M.ct_dimming((ct.astype(float) + mri) / 2, ct) == pytest.approx((250 - 155) / 1)
    brighter = ct.copy()
    brighter[:, 2:4] = 0  # soft tissue darkened: outside the mask
    brighter[0, :2] = 255  # brighter than CT in bone: not a loss
    brighter[1, :2] = 230  # two bone pixels 20 levels darker
    assert M.ct_dimming(brighter, ct) == pytest.approx(2 * 20 / 16)
    assert math.isnan(M.ct_dimming(mri, np.full((8, 8), 100, np.uint8)))
    with pytest.raises(ValueError):
        M.ct_dimming(mri[:4], ct)


def test_ct_dimming_of_a_hu_ct_masks_bone_in_hu_not_by_its_window():
    """Mid-grey of the default 40/400 window is 40 HU (grey matter): darkening brain is not
    darkening bone. With the HU values the mask is >= 130 HU."""
    hu = np.full((8, 8), 45.0)  # brain, windowed above mid-grey
    hu[:, :2] = 1000.0  # bone
    ct8 = np.clip((hu + 160) / 400 * 255, 0, 255).round()
    darker_brain = ct8.copy()
    darker_brain[:, 2:] = 100
    assert M.ct_dimming(darker_brain, ct8) > 20  # by the window: the brain counted
    assert M.ct_dimming(darker_brain, ct8, hu) == 0.0  # by HU: bone only, and bone is kept
    greyed_bone = ct8.copy()
    greyed_bone[:, :2] = 155
    assert M.ct_dimming(greyed_bone, ct8, hu) == pytest.approx(100.0)
