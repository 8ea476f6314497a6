"""Classic fusion baselines: identities and the selection rules they are defined by."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.benchmarks import baselines as B


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (37, 50)).astype(np.float64)  # odd sizes exercise pyramid/wavelet cropping
    b = rng.integers(0, 256, (37, 50)).astype(np.float64)
    return a, b


@pytest.mark.parametrize("name", list(B.BASELINES))
def test_fusing_an_image_with_itself_returns_it(name, pair):
    a, _ = pair
    out = B.get_baseline(name)(a, a)
    assert out.shape == a.shape
    np.testing.assert_allclose(out, a, atol=1e-6)


def test_average_and_maximum(pair):
    a, b = pair
    np.testing.assert_array_equal(B.pixel_maximum(a, b), np.where(a > b, a, b))
    np.testing.assert_allclose(B.pixel_average(a, b), (a + b) / 2)


def test_detail_rule_keeps_the_stronger_edge():
    a = np.zeros((32, 32))
    a[:, 16:] = 200  # a strong vertical edge
    b = np.full((32, 32), 100.0)  # flat: no detail
    for name in ("laplacian", "wavelet"):
        out = B.get_baseline(name)(a, b)
        # A's band-pass detail wins, so the edge stays sharp: the average would give a 100 jump
        jump = np.abs(np.diff(out[8:24], axis=1)).max()
        assert jump > 150, (name, jump)
        assert out.mean() == pytest.approx(100, abs=15), name  # base averaged; the maximum gives 150


def test_flat_images_fuse_to_their_mean_base():
    a, b = np.full((16, 16), 40.0), np.full((16, 16), 80.0)
    np.testing.assert_allclose(B.laplacian_pyramid(a, b), 60.0, atol=1e-9)
    np.testing.assert_allclose(B.wavelet(a, b), 60.0, atol=1e-9)


def test_guided_filter_fusion_keeps_the_salient_source_and_is_symmetric():
    a = np.zeros((64, 64))
    a[:, 32:] = 200  # an edge only a has
    b = np.full((64, 64), 100.0)
    out = B.guided_filter_fusion(a, b)
    # Near the edge a is the salient source, so its detail survives nearly at full strength...
    assert np.abs(np.diff(out[16:48], axis=1)).max() > 150
    # ...and the fusion does not depend on which image comes first.
    np.testing.assert_allclose(B.guided_filter_fusion(b, a), out, atol=1e-9)


def test_guided_filter_follows_the_guide_edges():
    guide = np.zeros((40, 40))
    guide[:, 20:] = 1.0
    src = np.zeros((40, 40))
    src[:, 21:] = 1.0  # the same step, one pixel off
    out = B.guided_filter(guide, src, radius=3, eps=1e-6)
    # Edge-preserving: the output keeps a step where the guide has one instead of blurring it.
    assert out[:, 17].max() < 0.2 and out[:, 23].min() > 0.8
    assert abs(out[:, 19:21].mean(axis=0)[1] - out[:, 19:21].mean(axis=0)[0]) > 0.5


def test_flat_images_fuse_to_the_mean_under_guided_filtering():
    a, b = np.full((48, 48), 40.0), np.full((48, 48), 80.0)
    np.testing.assert_allclose(B.guided_filter_fusion(a, b), 60.0, atol=1e-9)  # no saliency: equal weights


def test_uint8_output_and_errors(pair):
    a, b = pair
    out = B.fuse_to_uint8("laplacian", a, b)
    assert out.dtype == np.uint8 and out.shape == a.shape
    with pytest.raises(ValueError, match="valid: average"):
        B.get_baseline("nope")
    with pytest.raises(ValueError):
        B.pixel_maximum(a, b[:5])
