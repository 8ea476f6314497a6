"""Conservative geometric augmentation, identical for both images of a pair.

The pair is registered: CT and MRI must move together or the fusion target becomes two
misaligned anatomies. Both tensors are stacked along channels and sent through one random
flip and one affine warp per sample, so they can never drift apart. Intensities are never
touched: they carry the windowing and normalisation the preprocessing config promised.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .model import STRIDE


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (each drawn independently per sample)."""

    hflip_p: float = 0.5  # left-right flip: axial slices are roughly symmetric
    vflip_p: float = 0.0  # off: an upside-down head is not an image the model will ever see
    max_rotation_deg: float = 5.0  # uniform in [-max, max]
    max_translate: float = 0.03  # fraction of the image side, uniform in [-max, max] per axis
    # Train on random crop_size x crop_size windows (0: the whole image). Whole-pixel offsets, so
    # nothing is resampled. A 128 window has a quarter of a 256 image's pixels but, with the
    # optimiser's fixed share, about half its step time on the CPU: twice the steps per hour.
    # Images no larger than the window are left whole.
    crop_size: int = 0

    def __post_init__(self) -> None:
        if self.crop_size < 0 or self.crop_size % STRIDE:
            raise ValueError(f"crop_size must be 0 or a positive multiple of {STRIDE} (the network's "
                             f"stride), got {self.crop_size}")

    def to_dict(self) -> dict:
        return asdict(self)


def _affine_matrices(n: int, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """[n, 2, 3] matrices for affine_grid (normalised coordinates) with flips folded in."""
    u = torch.rand(n, 5, generator=gen)
    angle = (u[:, 0] * 2 - 1) * math.radians(cfg.max_rotation_deg)
    shift = (u[:, 1:3] * 2 - 1) * cfg.max_translate * 2  # normalised coords span 2
    sx = torch.where(u[:, 3] < cfg.hflip_p, -1.0, 1.0)
    sy = torch.where(u[:, 4] < cfg.vflip_p, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * sx, -sin * sy, shift[:, 0]], dim=1),
            torch.stack([sin * sx, cos * sy, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    return theta


def random_crop(images: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """One random size x size window per sample of [B, C, H, W] (whole pixels); all when size is 0 or too big."""
    height, width = images.shape[-2:]
    if size == 0 or (size >= height and size >= width):
        return images
    size_h, size_w = min(size, height), min(size, width)
    tops = torch.randint(0, height - size_h + 1, (images.shape[0],), generator=gen).tolist()
    lefts = torch.randint(0, width - size_w + 1, (images.shape[0],), generator=gen).tolist()
    return torch.stack([img[:, t : t + size_h, l : l + size_w] for img, t, l in zip(images, tops, lefts)])


def augment_pair(
    ct: torch.Tensor, mri: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop (`cfg.crop_size`) and warp a batch of pairs ([B,3,H,W], [B,1,H,W]), one draw per pair.

    Random numbers come only from `gen` (on the CPU), so a run is reproducible from its seed
    whatever device trains. Uncovered borders become 0, like the letterbox padding.
    """
    stacked = random_crop(torch.cat([ct, mri], dim=1), cfg.crop_size, gen)
    theta = _affine_matrices(stacked.shape[0], cfg, gen).to(stacked.device, stacked.dtype)
    grid = F.affine_grid(theta, list(stacked.shape), align_corners=False)
    warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = warped.clamp_(0.0, 1.0)
    return warped[:, : ct.shape[1]].contiguous(), warped[:, ct.shape[1] :].contiguous()
