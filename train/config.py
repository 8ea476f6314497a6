"""Frozen configs for the fusion model and its loss; both travel inside every checkpoint.

`ModelConfig()` is the spec's network (two ResNet34 encoders, 64/128/256/512 channels).
`ModelConfig.tiny()` keeps the same structure with ResNet18 blocks at width 8 (8/16/32/64
channels, ~0.56 M parameters): a 64x64 forward takes milliseconds, which is what tests and the
DDP/resume smoke runs use.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

# Residual blocks per stage for the torchvision BasicBlock ResNets the encoders reproduce.
ENCODER_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}

# How the decoder doubles resolution (see train/decoder.py for the checkerboard measurements).
DECODER_UPSAMPLES = (
    "resize-conv",  # bilinear x2 then 3x3 conv: cannot print a 2x2 grid (default)
    "transpose4",  # transposed conv k4/s2 initialised as bilinear upsampling of a 1x1 channel mix
    "transpose2",  # transposed conv k2/s2, the spec prototype: prints a visible checkerboard
)

# What happens to the decoder's sigmoid output.
OUTPUT_HEADS = (
    "attention",  # spec: output * sigmoid(medical attention(output))
    "plain",  # decoder sigmoid only; the medical attention layer exists but is bypassed (ablation)
    "residual",  # output * 2 sigmoid(medical attention(output)), clipped to [0, 1]: identity at gate 0.5
)

ROLE_PAIRS = (("ct", "mri"), ("vis", "ir"))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of FusionNet. Defaults reproduce the spec (about 55 M parameters) except the
    decoder's upsampling: resize-conv by default, the spec's transposed convolutions with
    decoder_upsample="transpose2" (they drew a checkerboard: train/decoder.py)."""

    encoder: str = "resnet34"  # block layout of both encoders, a key of ENCODER_BLOCKS
    width: int = 64  # first-stage channels, doubled per stage; 64 = torchvision (ImageNet weights fit)
    roles: tuple[str, str] = ("ct", "mri")  # encoder name prefixes: 3-channel role first, 1-channel second
    decoder_upsample: str = "resize-conv"  # one of DECODER_UPSAMPLES
    attention_reduction: int = 16  # channel-attention bottleneck ratio (spec: 16)
    spatial_kernel: int = 7  # spatial-attention conv kernel (spec: 7x7)
    medical_hidden: int = 16  # hidden channels of the medical attention layer (spec: 16)
    # Initial value of the medical attention gate (its last bias = logit of it). 0.5 is what
    # PyTorch's init gives on average and halves a fresh model's output; near 1 starts the layer
    # close to identity. The spec does not fix it; 0.5 keeps its behaviour.
    medical_gate_init: float = 0.5
    output_head: str = "attention"  # one of OUTPUT_HEADS
    # Full-resolution skip: the last decoder block also sees gray(CT) and the MRI. Without it
    # (the spec) the finest features are the 1/4-scale f1, and fine edges must be re-synthesised.
    input_skip: bool = False
    # Decoder output (before the head's gate) where the last decoder features are all zero, e.g. a
    # flat black background after the ReLUs: the head conv's bias starts at its logit. None keeps
    # PyTorch's init (about 0.5, the spec's). AdamW moves a bias about lr per step, so from 0.5 a
    # background needs thousands of steps to turn black.
    head_bias_init: float | None = None
    # Hidden channels of a residual block at full size before the head (FullResolutionRefine, sees
    # the decoder features and, with input_skip, the inputs). 0 (the spec): none.
    refine_channels: int = 0

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; keep the field hashable and comparable.
        object.__setattr__(self, "roles", tuple(self.roles))
        if self.encoder not in ENCODER_BLOCKS:
            raise ValueError(f"encoder must be one of {sorted(ENCODER_BLOCKS)}, got {self.encoder!r}")
        if self.width <= 0 or self.width % 8:
            raise ValueError(f"width must be a positive multiple of 8, got {self.width}")
        if self.roles not in ROLE_PAIRS:
            raise ValueError(f"roles must be one of {ROLE_PAIRS}, got {self.roles}")
        if self.decoder_upsample not in DECODER_UPSAMPLES:
            raise ValueError(f"decoder_upsample must be one of {DECODER_UPSAMPLES}, got {self.decoder_upsample!r}")
        if self.output_head not in OUTPUT_HEADS:
            raise ValueError(f"output_head must be one of {OUTPUT_HEADS}, got {self.output_head!r}")
        if self.attention_reduction <= 0 or self.medical_hidden <= 0:
            raise ValueError("attention_reduction and medical_hidden must be positive")
        if not 0 < self.medical_gate_init < 1:
            raise ValueError(f"medical_gate_init must be in (0, 1), got {self.medical_gate_init}")
        if self.head_bias_init is not None and not 0 < self.head_bias_init < 1:
            raise ValueError(f"head_bias_init must be in (0, 1) or None, got {self.head_bias_init}")
        if self.refine_channels < 0:
            raise ValueError(f"refine_channels must be >= 0, got {self.refine_channels}")
        if self.spatial_kernel <= 0 or self.spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel must be odd and positive, got {self.spatial_kernel}")

    @classmethod
    def tiny(cls, **overrides) -> ModelConfig:
        """Same structure, ResNet18 blocks at width 8: for tests and smoke runs, not for quality."""
        return cls(**{"encoder": "resnet18", "width": 8, **overrides})

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Encoder (and fusion) channels at 1/4, 1/8, 1/16, 1/32 of the input."""
        return tuple(self.width * 2**i for i in range(4))

    def with_roles(self, roles: tuple[str, str]) -> ModelConfig:
        return replace(self, roles=tuple(roles))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["roles"] = list(self.roles)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**_known_fields(cls, data, "model"))

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


DETAIL_TARGETS = ("max-of-gradients", "gradient-of-max", "max-of-gradients-outside-bone")


@dataclass(frozen=True)
class LossConfig:
    """Weights and constants of FusionLoss (train/loss.py). Defaults are the spec's."""

    w_content: float = 15.0  # L1(fused gray, max(CT gray, MRI gray))
    w_structure: float = 8.0  # 1 - SSIM against CT (RGB) and MRI (gray), averaged
    w_detail: float = 5.0  # L1(grad fused, max(grad CT, grad MRI))
    w_consistency: float = 3.0  # MSE against CT and MRI, averaged
    w_gradient: float = 2.0  # L1(grad fused, grad CT) and L1(grad fused, grad MRI), averaged
    w_medical: float = 10.0  # MSE inside the bright (> mask_threshold) regions of CT and of MRI
    mask_threshold: float = 0.5  # "high intensity" in the medical term (spec: 0.5 on [0, 1] images)
    ssim_window: int = 11  # Gaussian window of SSIM (pytorch-msssim default 11, sigma 1.5)
    # The detail term's target. "max-of-gradients" (spec): max(|grad CT|, |grad MRI|), every edge of
    # either source, also where the other source is brighter and hides it (an MRI edge inside CT's
    # saturated bone is drawn as a line through the bone). "gradient-of-max": |grad max(CT, MRI)|,
    # the edges of the content term's own target, which no image contradicts.
    # "max-of-gradients-outside-bone": the second inside CT's bright mask (> mask_threshold, dilated
    # 2 px), the first elsewhere: no line through the bone, but the dimmer source's edges in soft tissue.
    detail_target: str = "max-of-gradients"

    def __post_init__(self) -> None:
        for name in self.weight_names():
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.detail_target not in DETAIL_TARGETS:
            raise ValueError(f"detail_target must be one of {DETAIL_TARGETS}, got {self.detail_target!r}")
        if self.ssim_window <= 1 or self.ssim_window % 2 == 0:
            raise ValueError(f"ssim_window must be odd and > 1, got {self.ssim_window}")

    @staticmethod
    def weight_names() -> tuple[str, ...]:
        return ("w_content", "w_structure", "w_detail", "w_consistency", "w_gradient", "w_medical")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LossConfig:
        return cls(**_known_fields(cls, data, "loss"))


def _known_fields(cls, data: dict, what: str) -> dict:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} config fields: {sorted(unknown)}")
    return dict(data)
