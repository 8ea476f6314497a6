"""FusionLoss: every term on inputs whose value is known, weights, fp32 under autocast, gradients."""

from __future__ import annotations

import pytest
import torch

from medfuse.train.config import LossConfig
from medfuse.train.loss import TERMS, FusionLoss, sobel_magnitude, to_gray

SIZE = 32


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ct = torch.rand(2, 1, SIZE, SIZE, generator=generator).repeat(1, 3, 1, 1)
    return ct, torch.rand(2, 1, SIZE, SIZE, generator=generator)


def _flat(value: float, channels: int) -> torch.Tensor:
    return torch.full((1, channels, SIZE, SIZE), value)


def _step(channels: int) -> torch.Tensor:
    """0 on the left half, 1 on the right half."""
    image = torch.zeros(1, channels, SIZE, SIZE)
    image[..., SIZE // 2 :] = 1.0
    return image


def test_returns_every_term_and_the_weighted_total():
    fused = torch.rand(2, 3, SIZE, SIZE)
    total, terms = FusionLoss()(fused, *_pair())
    assert set(terms) == {*TERMS, "total"}
    weights = {"content": 15, "structure": 8, "detail": 5, "consistency": 3, "gradient": 2, "medical": 10}
    assert total.item() == pytest.approx(sum(w * terms[name].item() for name, w in weights.items()), rel=1e-6)
    assert terms["total"] is total


def test_each_weight_is_configurable():
    fused = torch.rand(2, 3, SIZE, SIZE)
    _, terms = FusionLoss()(fused, *_pair())
    only_detail = LossConfig(**{name: 0.0 for name in LossConfig.weight_names()} | {"w_detail": 2.0})
    total, _ = FusionLoss(only_detail)(fused, *_pair())
    assert total.item() == pytest.approx(2.0 * terms["detail"].item(), rel=1e-6)
    with pytest.raises(ValueError):
        LossConfig(w_medical=-1.0)


def test_content_is_zero_for_the_pixel_maximum():
    ct, mri = _pair()
    fused = torch.maximum(to_gray(ct), mri).repeat(1, 3, 1, 1)
    _, terms = FusionLoss()(fused, ct, mri)
    assert terms["content"].item() < 1e-7
    _, terms = FusionLoss()(ct, ct, mri)  # CT alone misses every pixel where MRI is brighter
    assert terms["content"].item() == pytest.approx(torch.relu(mri - to_gray(ct)).mean().item(), rel=1e-5)


def test_identical_images_cost_nothing():
    ct, _ = _pair()
    _, terms = FusionLoss()(ct, ct, to_gray(ct))
    for name in TERMS:
        assert abs(terms[name].item()) < 1e-5, name


def test_structure_is_one_minus_ssim_and_grows_with_noise():
    ct, mri = _pair()
    _, same = FusionLoss()(mri.repeat(1, 3, 1, 1), mri.repeat(1, 3, 1, 1), mri)
    noisy = (mri + 0.3 * torch.randn_like(mri)).clamp(0, 1).repeat(1, 3, 1, 1)
    _, worse = FusionLoss()(noisy, mri.repeat(1, 3, 1, 1), mri)
    assert same["structure"].item() < 1e-6
    assert 0.1 < worse["structure"].item() <= 2.0


def test_consistency_is_the_mean_of_both_mses():
    _, terms = FusionLoss()(_flat(0.5, 3), _flat(0.0, 3), _flat(1.0, 1))
    assert terms["consistency"].item() == pytest.approx(0.25)


def test_medical_compares_only_bright_regions():
    # CT bright everywhere (mask all), MRI dark everywhere (mask none): 0.5 * (0.6 - 0.8)^2.
    _, terms = FusionLoss()(_flat(0.6, 3), _flat(0.8, 3), _flat(0.2, 1))
    assert terms["medical"].item() == pytest.approx(0.5 * 0.04, rel=1e-5)
    _, terms = FusionLoss()(_flat(0.6, 3), _flat(0.3, 3), _flat(0.2, 1))
    assert terms["medical"].item() == 0.0


def test_sobel_magnitude_of_a_step():
    grad = sobel_magnitude(_step(1))
    # The two columns beside the edge respond with 1 + 2 + 1 = 4; flat areas and borders with 0.
    assert torch.equal(grad[0, 0, :, SIZE // 2 - 1 : SIZE // 2 + 1], torch.full((SIZE, 2), 4.0))
    assert grad.sum().item() == pytest.approx(4.0 * 2 * SIZE)


def test_detail_and_gradient_on_a_step_edge():
    # Flat fused image, CT with one step edge, flat MRI: |grad CT| averages 8 / SIZE per pixel.
    _, terms = FusionLoss()(_flat(0.5, 3), _step(3), _flat(0.5, 1))
    assert terms["detail"].item() == pytest.approx(8.0 / SIZE, rel=1e-5)
    assert terms["gradient"].item() == pytest.approx(0.5 * 8.0 / SIZE, rel=1e-5)
    # A fused image carrying the edge meets the detail target exactly.
    _, terms = FusionLoss()(_step(3), _step(3), _flat(0.5, 1))
    assert terms["detail"].item() < 1e-7


def test_detail_target_hidden_edge():
    # Saturated CT "bone" everywhere; the MRI has a step edge inside it. The pixel maximum is the
    # flat bone, so "gradient-of-max" asks for no edge there, while the spec's "max-of-gradients"
    # asks the fusion to draw the MRI's edge through the bone.
    bone, mri_edge = _flat(1.0, 3), _step(1) * 0.5
    spec = FusionLoss(LossConfig(detail_target="max-of-gradients"))
    of_max = FusionLoss(LossConfig(detail_target="gradient-of-max"))
    assert spec(bone, bone, mri_edge)[1]["detail"].item() == pytest.approx(0.5 * 8.0 / SIZE, rel=1e-5)
    assert of_max(bone, bone, mri_edge)[1]["detail"].item() < 1e-7
    # Where the edge is visible in the maximum (flat dark CT), both targets ask for it.
    dark = _flat(0.0, 3)
    assert of_max(dark, dark, mri_edge)[1]["detail"].item() == pytest.approx(
        spec(dark, dark, mri_edge)[1]["detail"].item(), rel=1e-6)
    with pytest.raises(ValueError, match="detail_target"):
        LossConfig(detail_target="sharpest")


def test_detail_target_outside_bone_keeps_soft_tissue_edges_only():
    # CT: bone (1.0) on the left half, soft tissue (0.4) on the right. The MRI, darker than CT
    # everywhere, has one edge inside the bone (column 6, height 0.4) and one in soft tissue
    # (column 24, height 0.2); the fused image is the pixel maximum, i.e. the CT.
    ct = torch.full((1, 1, SIZE, SIZE), 0.4)
    ct[..., : SIZE // 2] = 1.0
    mri = torch.full((1, 1, SIZE, SIZE), 0.1)
    mri[..., 6 : SIZE // 2] = 0.6
    mri[..., :6] = 0.2
    mri[..., 24:] = 0.3
    ct3 = ct.repeat(1, 3, 1, 1)

    def detail(target: str) -> float:
        return FusionLoss(LossConfig(detail_target=target))(ct3, ct3, mri)[1]["detail"].item()

    assert detail("gradient-of-max") < 1e-7  # neither MRI edge shows in the maximum
    assert detail("max-of-gradients-outside-bone") == pytest.approx(8 * 0.2 / SIZE, rel=1e-5)  # soft tissue only
    assert detail("max-of-gradients") == pytest.approx(8 * (0.2 + 0.4) / SIZE, rel=1e-5)  # both


def test_float32_even_under_bf16_autocast_and_gradients_flow():
    ct, mri = _pair()
    fused = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, terms = FusionLoss()(fused.bfloat16(), ct.bfloat16(), mri.bfloat16())
    assert all(value.dtype == torch.float32 for value in terms.values())
    assert all(torch.isfinite(value) for value in terms.values())
    total.backward()
    assert fused.grad is not None and torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0
