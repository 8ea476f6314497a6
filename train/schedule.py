"""Optimiser parameter groups, the warmup+cosine schedule and encoder freezing (spec,
"Learning Rate Schedule" and "Progressive Unfreezing").

Groups follow the model's top-level submodules: `*_encoder` (pretrained, moved least),
`fusion` (half rate) and everything else — decoder and medical attention — at the full rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

ENCODER_SUFFIX = "_encoder"
FUSION_PREFIX = "fusion"


def group_of(param_name: str) -> str:
    """'encoders', 'fusion' or 'decoder' for a parameter's qualified name."""
    top = param_name.split(".", 1)[0]
    if top.endswith(ENCODER_SUFFIX):
        return "encoders"
    if top == FUSION_PREFIX:
        return "fusion"
    return "decoder"


def param_groups(model: nn.Module, lr: float, encoder_mult: float, fusion_mult: float) -> list[dict]:
    """AdamW groups named 'encoders', 'fusion', 'decoder' with lr scaled per group.

    Every parameter is listed, frozen or not: AdamW skips parameters whose grad is None, so a
    frozen encoder keeps its values and optimiser state until it is unfrozen.
    """
    mults = {"encoders": encoder_mult, "fusion": fusion_mult, "decoder": 1.0}
    params: dict[str, list[nn.Parameter]] = {name: [] for name in mults}
    for name, p in model.named_parameters():
        params[group_of(name)].append(p)
    return [
        {"name": name, "params": params[name], "lr": lr * mults[name]} for name in mults if params[name]
    ]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, encoder_mult: float, fusion_mult: float
) -> torch.optim.AdamW:
    # fused: one kernel per group instead of a dozen element-wise passes per tensor (CPU and CUDA).
    groups = param_groups(model, lr, encoder_mult, fusion_mult)
    return torch.optim.AdamW(groups, weight_decay=weight_decay, fused=True)


@dataclass(frozen=True)
class WarmupCosine:
    """The spec's lr_lambda: linear warmup over `warmup` epochs, then a half cosine to 0 at `total`.

    Stepped once per epoch (as in the spec), so epoch e trains with base_lr * factor(e). A
    dataclass rather than a closure so LambdaLR can save it in the checkpoint.
    """

    warmup: int
    total: int

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup:
            return (epoch + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(epoch - self.warmup, span) / span))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total))


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    return [m for name, m in model.named_children() if name.endswith(ENCODER_SUFFIX)]


def set_encoders_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze or release the encoders' parameters.

    Frozen encoders also run in eval mode (call after `model.train()`), so their BatchNorm
    running statistics stay those of the pretrained weights instead of drifting on the first
    batches of a new modality.
    """
    for enc in encoder_modules(model):
        for p in enc.parameters():
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None
        if frozen:
            enc.eval()
