"""FusionLoss: the spec's six weighted terms, always evaluated in float32.

Conventions (documented because the spec leaves them open):
- gray = mean of the three RGB channels. The CT input is a gray image repeated three times, so
  its gray is exact; the fused output is a pseudo-colour image whose channels carry no colour
  meaning, so no channel deserves luma's larger green weight.
- gradients = Sobel responses, magnitude |gx| + |gy| (L1: no square root, whose gradient is
  infinite on flat regions), replicate padding so image borders are not edges.
- SSIM from pytorch-msssim (Gaussian window 11, sigma 1.5, data range 1).

Call it OUTSIDE autocast: it casts its inputs to float32 and disables autocast inside anyway,
because SSIM's variance terms (E[x^2] - E[x]^2) cancel catastrophically in bf16/fp16 — a
prototype got NaN and -inf validation losses that way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import nn

from .config import LossConfig

TERMS = ("content", "structure", "detail", "consistency", "gradient", "medical")

BONE_MARGIN = 2  # pixels of dilation of the bone mask of "max-of-gradients-outside-bone"

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, 1, H, W], mean over channels (identity for 1 channel)."""
    return x.mean(dim=1, keepdim=True)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Per-channel |Sobel x| + |Sobel y| of [B, C, H, W], same shape."""
    channels = x.shape[1]
    kx = _SOBEL_X.to(x)
    kernels = torch.stack([kx, kx.t()])[:, None].repeat(channels, 1, 1, 1)  # [2C, 1, 3, 3]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    responses = F.conv2d(padded, kernels, groups=channels)  # [B, 2C, H, W]: (gx, gy) per channel
    return responses.abs().unflatten(1, (channels, 2)).sum(dim=2)


class FusionLoss(nn.Module):
    """__call__(fused [B,3,H,W], ct [B,3,H,W], mri [B,1,H,W]) -> (total, {term: value, ..., "total": total})."""

    def __init__(self, cfg: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg or LossConfig()

    def forward(
        self, fused: torch.Tensor, ct: torch.Tensor, mri: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.autocast(device_type=fused.device.type, enabled=False):
            terms = self.terms(fused.float(), ct.float(), mri.float())
        total = sum(getattr(self.cfg, f"w_{name}") * terms[name] for name in TERMS)
        return total, {**terms, "total": total}

    def terms(self, fused: torch.Tensor, ct: torch.Tensor, mri: torch.Tensor) -> dict[str, torch.Tensor]:
        """The six unweighted terms, from float32 tensors in [0, 1]."""
        fused_gray, ct_gray, mri_gray = to_gray(fused), to_gray(ct), to_gray(mri)
        brightest = torch.maximum(ct_gray, mri_gray)
        grad_fused, grad_ct, grad_mri = sobel_magnitude(fused), sobel_magnitude(ct), sobel_magnitude(mri_gray)
        # grad_mri (and the gradient-of-max target) are [B,1,H,W]: broadcasting compares them with
        # every fused channel.
        detail_target = self._detail_target(ct_gray, brightest, grad_ct, grad_mri)
        return {
            "content": F.l1_loss(fused_gray, brightest),
            "structure": 0.5 * (self._dssim(fused, ct) + self._dssim(fused_gray, mri_gray)),
            "detail": (grad_fused - detail_target).abs().mean(),
            "consistency": 0.5 * (F.mse_loss(fused, ct) + ((fused - mri) ** 2).mean()),
            "gradient": 0.5 * ((grad_fused - grad_ct).abs().mean() + (grad_fused - grad_mri).abs().mean()),
            "medical": 0.5 * (self._masked_mse(fused_gray, ct_gray) + self._masked_mse(fused_gray, mri_gray)),
        }

    def _detail_target(
        self, ct_gray: torch.Tensor, brightest: torch.Tensor, grad_ct: torch.Tensor, grad_mri: torch.Tensor
    ) -> torch.Tensor:
        target = self.cfg.detail_target
        if target == "max-of-gradients":
            return torch.maximum(grad_ct, grad_mri)
        if target == "gradient-of-max":
            return sobel_magnitude(brightest)
        # "max-of-gradients-outside-bone": inside CT's bright (bone) mask only the edges of max(CT, MRI),
        # elsewhere every edge. The mask is dilated by BONE_MARGIN pixels so that an MRI edge lying on
        # the partial-volume rim of the bone (CT below the threshold there) is not asked for either.
        bone = F.max_pool2d(self._bright_mask(ct_gray), 2 * BONE_MARGIN + 1, stride=1, padding=BONE_MARGIN)
        return torch.where(bone > 0, sobel_magnitude(brightest), torch.maximum(grad_ct, grad_mri))

    def _bright_mask(self, gray: torch.Tensor) -> torch.Tensor:
        """1 where gray > mask_threshold (the spec's "high intensity"), else 0; the medical term's mask."""
        return (gray > self.cfg.mask_threshold).to(gray.dtype)

    def _dssim(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - ssim(x, y, data_range=1.0, size_average=True, win_size=self.cfg.ssim_window)

    def _masked_mse(self, fused_gray: torch.Tensor, source_gray: torch.Tensor) -> torch.Tensor:
        # Spec form: MSE of both images multiplied by the source's bright mask, averaged over all pixels.
        mask = self._bright_mask(source_gray)
        return F.mse_loss(fused_gray * mask, source_gray * mask)
