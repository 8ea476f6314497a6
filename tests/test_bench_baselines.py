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


def test_uint8_output_and_errors(pair):
    a, b = pair
    out = B.fuse_to_uint8("laplacian", a, b)
    assert out.dtype == np.uint8 and out.shape == a.shape
    with pytest.raises(ValueError, match="valid: average"):
        B.get_baseline("nope")
    with pytest.raises(ValueError):
        B.pixel_maximum(a, b[:5])
