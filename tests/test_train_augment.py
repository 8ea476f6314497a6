"""Augmentation moves CT and MRI together and leaves intensities alone."""

from __future__ import annotations

import pytest
import torch

from medfuse.train.augment import AugmentConfig, augment_pair


def _pair(n=3, size=32):
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(n, 1, size, size, generator=gen)
    return base.repeat(1, 3, 1, 1), base.clone()


def test_both_images_get_the_same_transform():
    ct, mri = _pair()
    cfg = AugmentConfig(hflip_p=0.5, vflip_p=0.5, max_rotation_deg=10, max_translate=0.1)
    out_ct, out_mri = augment_pair(ct, mri, cfg, torch.Generator().manual_seed(1))
    assert out_ct.shape == ct.shape and out_mri.shape == mri.shape
    for c in range(3):
        torch.testing.assert_close(out_ct[:, c : c + 1], out_mri)
    assert not torch.allclose(out_mri, mri)


def test_identity_ranges_and_pure_flip():
    ct, mri = _pair()
    still = AugmentConfig(hflip_p=0.0, max_rotation_deg=0.0, max_translate=0.0)
    out_ct, out_mri = augment_pair(ct, mri, still, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out_mri, mri, atol=1e-5, rtol=0)
    flip = AugmentConfig(hflip_p=1.0, max_rotation_deg=0.0, max_translate=0.0)
    _, flipped = augment_pair(ct, mri, flip, torch.Generator().manual_seed(0))
    torch.testing.assert_close(flipped, mri.flip(-1), atol=1e-5, rtol=0)


def test_same_seed_same_result():
    ct, mri = _pair()
    a = augment_pair(ct, mri, AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment_pair(ct, mri, AugmentConfig(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)


def test_rotation_blurs_the_pair_and_flips_do_not():
    # Why recipes/harvard.toml turns rotation and shifts off: bilinear resampling at non-integer
    # positions is a low-pass filter, so the network would only ever see softened sources.
    from medfuse.train.loss import sobel_magnitude

    ct, mri = _pair(n=8, size=64)
    inner = (slice(None), slice(None), slice(12, 52), slice(12, 52))  # away from the zero-filled corners

    def edge_energy(x):
        return sobel_magnitude(x)[inner].mean().item()

    rotate = AugmentConfig(hflip_p=0.0, max_rotation_deg=5.0, max_translate=0.0)
    _, rotated = augment_pair(ct, mri, rotate, torch.Generator().manual_seed(2))
    assert edge_energy(rotated) < 0.9 * edge_energy(mri)
    flip_only = AugmentConfig(hflip_p=0.5, max_rotation_deg=0.0, max_translate=0.0)
    _, flipped = augment_pair(ct, mri, flip_only, torch.Generator().manual_seed(2))
    assert abs(edge_energy(flipped) - edge_energy(mri)) < 1e-4 * edge_energy(mri)


def _window_origin(window: torch.Tensor, image: torch.Tensor) -> tuple[int, int] | None:
    size = window.shape[-1]
    for top in range(image.shape[-2] - size + 1):
        for left in range(image.shape[-1] - size + 1):
            if torch.equal(image[..., top : top + size, left : left + size], window):
                return top, left
    return None


def test_crop_takes_the_same_whole_pixel_window_from_both_images():
    ct, mri = _pair(n=4, size=64)
    cfg = AugmentConfig(hflip_p=0.0, max_rotation_deg=0.0, max_translate=0.0, crop_size=32)
    out_ct, out_mri = augment_pair(ct, mri, cfg, torch.Generator().manual_seed(3))
    assert out_ct.shape == (4, 3, 32, 32) and out_mri.shape == (4, 1, 32, 32)
    origins = []
    for i in range(4):
        origin = _window_origin(out_mri[i], mri[i])
        assert origin is not None, "the crop was resampled, not cut at whole pixels"
        top, left = origin
        torch.testing.assert_close(out_ct[i], ct[i, :, top : top + 32, left : left + 32], atol=1e-6, rtol=0)
        origins.append(origin)
    assert len(set(origins)) > 1  # one draw per pair, not one per batch


def test_crop_leaves_images_no_larger_than_the_window_whole_and_rejects_sizes_off_the_stride():
    ct, mri = _pair(size=32)
    cfg = AugmentConfig(hflip_p=0.0, max_rotation_deg=0.0, max_translate=0.0, crop_size=64)
    _, out_mri = augment_pair(ct, mri, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out_mri, mri, atol=1e-5, rtol=0)
    for bad in (-32, 100):
        with pytest.raises(ValueError, match="crop_size"):
            AugmentConfig(crop_size=bad)
