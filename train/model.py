"""FusionNet: two ResNet encoders, four dual-attention fusion blocks, decoder, medical attention.

This module only assembles; the blocks live in encoders.py, attention.py and decoder.py.
Submodule names are part of the checkpoint format: `{role}_encoder` (ct_/mri_, or vis_/ir_ in
pretraining), `fusion`, `decoder`, `medical_attention`.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import DualAttentionFusion, MedicalAttention
from .config import ModelConfig
from .decoder import FusionDecoder
from .encoders import ResNetEncoder

STRIDE = 32  # total downsampling of the encoders: inputs must be multiples of it


class FusionNet(nn.Module):
    """forward(a [B,3,H,W], b [B,1,H,W]) -> fused [B,3,H,W] in [0, 1]; a = CT (or visible), b = MRI (or IR)."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        first, second = cfg.roles
        self.add_module(f"{first}_encoder", ResNetEncoder(cfg.encoder, in_channels=3, width=cfg.width))
        self.add_module(f"{second}_encoder", ResNetEncoder(cfg.encoder, in_channels=1, width=cfg.width))
        self.fusion = nn.ModuleList(
            DualAttentionFusion(c, cfg.attention_reduction, cfg.spatial_kernel) for c in cfg.stage_channels
        )
        self.decoder = FusionDecoder(cfg.stage_channels, cfg.decoder_upsample, input_channels=2 if cfg.input_skip else 0,
                                     head_bias_init=cfg.head_bias_init, refine_channels=cfg.refine_channels)
        self.medical_attention = MedicalAttention(3, cfg.medical_hidden, cfg.medical_gate_init)

    @property
    def encoders(self) -> tuple[ResNetEncoder, ResNetEncoder]:
        return tuple(getattr(self, f"{role}_encoder") for role in self.cfg.roles)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():  # shape guards would pin dynamic export dims
            check_inputs(a, b)
        enc_a, enc_b = self.encoders
        fused = [block(fa, fb) for block, fa, fb in zip(self.fusion, enc_a(a), enc_b(b))]
        inputs = torch.cat([a.mean(dim=1, keepdim=True), b], dim=1) if self.cfg.input_skip else None
        out = self.decoder(fused, inputs)
        if self.cfg.output_head == "attention":
            out = self.medical_attention(out)
        elif self.cfg.output_head == "residual":
            out = self.medical_attention.residual(out)
        return out


def check_inputs(a: torch.Tensor, b: torch.Tensor) -> None:
    """Raise ValueError for inputs the network cannot take (wrong rank, channels, size, mismatch)."""
    if a.ndim != 4 or b.ndim != 4 or a.shape[1] != 3 or b.shape[1] != 1:
        raise ValueError(f"expected [B,3,H,W] and [B,1,H,W] inputs, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(f"input shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    height, width = a.shape[2:]
    if height % STRIDE or width % STRIDE:
        raise ValueError(f"height and width must be multiples of {STRIDE}, got {height}x{width}")


def build_model(cfg: ModelConfig | None = None) -> FusionNet:
    return FusionNet(cfg or ModelConfig())


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, size: int | tuple[int, int] = 256, batch: int = 1) -> int:
    """FLOPs (multiply and add counted separately) of one forward pass at size x size, per batch."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width = (size, size) if isinstance(size, int) else size
    param = next(model.parameters())
    a = torch.zeros(batch, 3, height, width, device=param.device, dtype=param.dtype)
    b = torch.zeros(batch, 1, height, width, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(a, b)
    finally:
        model.train(was_training)
    return counter.get_total_flops()
