"""ResNet encoders that return their four stage features, and ImageNet weights from a local file.

The encoder is torchvision's ResNet (its BasicBlock, its module names) without the pooling head,
with a width knob: at width 64 its state dict has exactly the keys and shapes of
`torchvision.models.resnet34()` minus `fc`, so a torchvision weights file loads unchanged.
Nothing is ever downloaded: weights come only from a path the user gives.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from medfuse.runtime.errors import MedfuseError

from .config import ENCODER_BLOCKS


class ResNetEncoder(nn.Module):
    """Stem + four residual stages; forward returns features at 1/4, 1/8, 1/16, 1/32."""

    def __init__(self, encoder: str = "resnet34", in_channels: int = 3, width: int = 64):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = tuple(width * 2**i for i in range(4))
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        for index, (planes, blocks) in enumerate(zip(self.out_channels, ENCODER_BLOCKS[encoder]), start=1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", _make_stage(inplanes, planes, blocks, stride))
            inplanes = planes
        _init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features


def _make_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
        )
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _init_like_torchvision(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def average_rgb_filters(weight: torch.Tensor) -> torch.Tensor:
    """[O, 3, k, k] RGB filters -> [O, 1, k, k] gray filters: the mean over RGB (spec "Modality Adaptation")."""
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected RGB conv filters [O, 3, k, k], got {tuple(weight.shape)}")
    return weight.mean(dim=1, keepdim=True)


def load_encoder_state(encoder: ResNetEncoder, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load a torchvision ResNet state dict (fc dropped) into one encoder; 1-channel conv1 is averaged."""
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if encoder.in_channels == 1 and "conv1.weight" in state and state["conv1.weight"].shape[1] == 3:
        state["conv1.weight"] = average_rgb_filters(state["conv1.weight"])
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        detail = (missing or unexpected or mismatched)[:3]
        raise MedfuseError(
            f"backbone weights do not fit this encoder ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} shape mismatches, e.g. {detail}); they must be a torchvision ResNet of the "
            "configured depth at width 64",
            source,
        )
    encoder.load_state_dict(state)


def read_backbone_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local torchvision weights file (e.g. resnet34-b627a593.pth) as a state dict."""
    path = Path(path)
    if not path.is_file():
        raise MedfuseError("backbone weights file not found", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated / pickled-object files
        raise MedfuseError(f"cannot read backbone weights ({type(err).__name__})", path) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedfuseError("backbone weights file is not a plain state dict of tensors", path)
    return state


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Initialise every `{role}_encoder` of `model` from a local torchvision ResNet weights file."""
    state = read_backbone_weights(path)
    encoders = [m for name, m in model.named_children() if name.endswith("_encoder")]
    if not encoders:
        raise ValueError("model has no *_encoder submodules")
    for encoder in encoders:
        load_encoder_state(encoder, state, Path(path))
