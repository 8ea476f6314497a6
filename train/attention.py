"""The spec's attention blocks: channel, spatial, the dual-attention fusion block, medical attention."""

from __future__ import annotations

import math

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average -> FC bottleneck -> sigmoid weight per channel."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)  # tiny widths would otherwise get a 0-unit bottleneck
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(self.avg_pool(x).flatten(1))
        return x * weights[:, :, None, None]


class SpatialAttention(nn.Module):
    """A k x k conv from C channels to one map, sigmoid, multiplied into every channel."""

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=kernel_size, padding=kernel_size // 2)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.conv(x))


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),  # BN follows: a bias is redundant
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DualAttentionFusion(nn.Module):
    """Channel then spatial attention on each modality (shared modules, as the spec), concat, 2 convs."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        self.channel_attention = ChannelAttention(channels, reduction)
        self.spatial_attention = SpatialAttention(channels, spatial_kernel)
        self.fusion_conv = nn.Sequential(*conv_bn_relu(2 * channels, channels), *conv_bn_relu(channels, channels))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_attention(self.channel_attention(x))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.fusion_conv(torch.cat([self.attend(a), self.attend(b)], dim=1))


class MedicalAttention(nn.Module):
    """Per-pixel, per-channel sigmoid weights computed from the fused RGB image (spec layer)."""

    def __init__(self, channels: int = 3, hidden: int = 16, gate_init: float = 0.5):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        nn.init.constant_(self.layers[2].bias, math.log(gate_init / (1 - gate_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.layers(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """x * 2 gate(x), clipped to [0, 1]: the gate can brighten as well as darken, and the
        layer is the identity where the gate is 0.5 (medical_gate_init 0.5 starts it there)."""
        return (x * 2.0 * self.layers(x)).clamp(0.0, 1.0)
