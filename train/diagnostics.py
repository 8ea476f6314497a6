"""Artefact measurements on model outputs (used by the decoder tests and when tuning quality)."""

from __future__ import annotations

import torch


def checkerboard_amplitude(images: torch.Tensor, margin: int = 8) -> torch.Tensor:
    """Amplitude of the 2x2-periodic pattern in [..., H, W] images, per image and channel.

    These are the three Nyquist coefficients of the 2D DFT (patterns (-1)^y, (-1)^x,
    (-1)^(x+y)) under a Hann window, combined as a root sum of squares: a grid of +-a adds up
    coherently to `a`, while smooth content alternates in sign and cancels (the window tapers the
    crop's ends, which would otherwise leave a residue of the order of the content's range / size).
    A `margin` (kept even so the phases stay aligned) drops the zero-padded borders first.
    """
    crop = _crop(images, margin)
    height, width = crop.shape[-2:]
    window = _hann(height, crop)[:, None] * _hann(width, crop)[None, :]
    rows = 1.0 - 2.0 * (torch.arange(height, dtype=crop.dtype, device=crop.device) % 2)
    cols = 1.0 - 2.0 * (torch.arange(width, dtype=crop.dtype, device=crop.device) % 2)
    patterns = (rows[:, None].expand(height, width), cols[None, :].expand(height, width), rows[:, None] * cols)
    coefficients = torch.stack([(crop * p * window).sum(dim=(-2, -1)) / window.sum() for p in patterns])
    return coefficients.pow(2).sum(dim=0).sqrt()


def _crop(images: torch.Tensor, margin: int) -> torch.Tensor:
    margin -= margin % 2
    return images[..., margin : images.shape[-2] - margin, margin : images.shape[-1] - margin].double()


def _hann(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(n + 2, periodic=False, dtype=like.dtype, device=like.device)[1:-1]


def checkerboard_ratio(images: torch.Tensor, margin: int = 8) -> torch.Tensor:
    """checkerboard_amplitude / standard deviation: the share of the variation that is a 2x2 grid."""
    crop = _crop(images, margin)
    return checkerboard_amplitude(images, margin) / crop.std(dim=(-2, -1)).clamp_min(1e-12)
