"""Decoder: five x2 upsampling steps from 1/32 to full size, skip connections from the fused features.

Why not the spec prototype's transposed conv with kernel 2, stride 2: each output pixel of such a
layer sees exactly one input pixel through one of four different 2x2 kernel taps, so the four
pixel phases get four different linear maps and a flat input comes out as a 2x2 grid — five
stacked layers print it at every scale (tests/test_model.py measures it). The default
"resize-conv" upsamples bilinearly and then applies a 3x3 conv: every pixel gets the same
filter, so a flat or smooth input cannot turn into a periodic pattern. "transpose4" keeps a
transposed convolution (kernel 4, stride 2, even overlap) initialised as a 1x1 channel mix
followed by bilinear upsampling, which starts without a grid too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import conv_bn_relu

# Bilinear x2 (align_corners=False) as a separable kernel of a stride-2 transposed conv, padding 1.
_BILINEAR_4 = (0.25, 0.75, 0.75, 0.25)


class BilinearUpsample(nn.Module):
    """x2 bilinear resize; a module so the decoder's structure shows in print(model)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _bilinear_transpose(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    layer = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
    mix = torch.empty(out_channels, in_channels, 1, 1)
    nn.init.kaiming_normal_(mix, mode="fan_out", nonlinearity="relu")
    taps = torch.tensor(_BILINEAR_4, device=mix.device)  # follows a `with torch.device(...)` context
    kernel = torch.outer(taps, taps)
    with torch.no_grad():
        layer.weight.copy_(mix[:, :, 0, 0].t()[:, :, None, None] * kernel)
    return layer


def make_upsample(mode: str, in_channels: int, out_channels: int) -> nn.Module:
    """A x2 upsampling from in_channels to out_channels, followed by batch norm and ReLU."""
    if mode == "resize-conv":
        up = [BilinearUpsample(), nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]
    elif mode == "transpose4":
        up = [_bilinear_transpose(in_channels, out_channels)]
    elif mode == "transpose2":
        up = [nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=False)]
    else:
        raise ValueError(f"unknown decoder upsampling {mode!r}")
    return nn.Sequential(*up, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """Upsample x2, concatenate the skip features (if any), one conv-BN-ReLU."""

    def __init__(self, mode: str, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = make_upsample(mode, in_channels, out_channels)
        self.conv = nn.Sequential(*conv_bn_relu(out_channels + skip_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class FullResolutionRefine(nn.Module):
    """Residual block at full size that sees the decoder features and the inputs again:
    x + conv1x1(relu(bn(conv(relu(bn(conv(cat(x, inputs)))))))). The last conv starts at zero, so
    the block starts as the identity (a checkpoint without it loads and behaves the same)."""

    def __init__(self, channels: int, input_channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(channels + input_channels, hidden), *conv_bn_relu(hidden, hidden))
        self.out = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, inputs: torch.Tensor | None) -> torch.Tensor:
        features = x if inputs is None else torch.cat([x, inputs], dim=1)
        return x + self.out(self.body(features))


class FusionDecoder(nn.Module):
    """Fused features at 1/4..1/32 (channels w, 2w, 4w, 8w) -> RGB logits' sigmoid at full size."""

    def __init__(self, stage_channels: tuple[int, int, int, int], mode: str = "resize-conv", out_channels: int = 3,
                 input_channels: int = 0, head_bias_init: float | None = None, refine_channels: int = 0):
        super().__init__()
        w1, w2, w3, w4 = stage_channels
        self.blocks = nn.ModuleList(
            [
                UpBlock(mode, w4, w3, w3),  # 1/32 -> 1/16, skip f3
                UpBlock(mode, w3, w2, w2),  # 1/16 -> 1/8, skip f2
                UpBlock(mode, w2, w1, w1),  # 1/8 -> 1/4, skip f1
                UpBlock(mode, w1, 0, w1 // 2),  # 1/4 -> 1/2
                UpBlock(mode, w1 // 2, input_channels, w1 // 4),  # 1/2 -> 1/1, skip: the inputs (input_skip)
            ]
        )
        self.refine = FullResolutionRefine(w1 // 4, input_channels, refine_channels) if refine_channels else None
        self.head = nn.Conv2d(w1 // 4, out_channels, 3, padding=1)
        if head_bias_init is not None:
            nn.init.constant_(self.head.bias, math.log(head_bias_init / (1 - head_bias_init)))
        self.sigmoid = nn.Sigmoid()

    def forward(self, fused: list[torch.Tensor], inputs: torch.Tensor | None = None) -> torch.Tensor:
        f1, f2, f3, f4 = fused
        x = f4
        for block, skip in zip(self.blocks, (f3, f2, f1, None, inputs)):
            x = block(x, skip)
        if self.refine is not None:
            x = self.refine(x, inputs)
        return self.sigmoid(self.head(x))
