"""Parameter groups, lr ratios, warmup+cosine shape, and that frozen encoders do not move."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medfuse.train.schedule import (
    WarmupCosine,
    build_optimizer,
    build_scheduler,
    group_of,
    set_encoders_frozen,
)


class Toy(nn.Module):
    """The contract's top-level layout, a few weights each."""

    def __init__(self):
        super().__init__()
        self.ct_encoder = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.mri_encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.fusion = nn.Conv2d(8, 4, 1)
        self.decoder = nn.Conv2d(4, 3, 1)
        self.medical_attention = nn.Conv2d(3, 3, 1)

    def forward(self, ct, mri):
        f = self.fusion(torch.cat([self.ct_encoder(ct), self.mri_encoder(mri)], 1))
        out = torch.sigmoid(self.decoder(f))
        return out * torch.sigmoid(self.medical_attention(out))


def test_groups_and_lr_ratios():
    model = Toy()
    opt = build_optimizer(model, lr=1e-3, weight_decay=1e-4, encoder_mult=0.1, fusion_mult=0.5)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"encoders", "fusion", "decoder"}
    assert groups["encoders"]["lr"] == pytest.approx(1e-4)
    assert groups["fusion"]["lr"] == pytest.approx(5e-4)
    assert groups["decoder"]["lr"] == pytest.approx(1e-3)
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))
    assert len(groups["decoder"]["params"]) == 4  # decoder + medical attention, weight and bias
    assert group_of("vis_encoder.conv1.weight") == "encoders"
    # the ratios survive the schedule
    sched = build_scheduler(opt, warmup=3, total=10)
    for _ in range(5):
        opt.step()
        sched.step()
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["encoders"] / lrs["decoder"] == pytest.approx(0.1)
    assert lrs["fusion"] / lrs["decoder"] == pytest.approx(0.5)


def test_schedule_shape():
    f = WarmupCosine(warmup=3, total=30)
    assert [f(e) for e in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert f(3) == pytest.approx(1.0)
    values = [f(e) for e in range(3, 30)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing after warmup
    assert f(3 + 27 // 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 13 / 27)))
    assert f(30) == pytest.approx(0.0, abs=1e-12)
    assert WarmupCosine(warmup=5, total=5)(7) >= 0  # no division by zero when warmup covers all


def test_frozen_encoders_do_not_move_or_drift():
    torch.manual_seed(0)
    model = Toy()
    opt = build_optimizer(model, lr=1e-2, weight_decay=1e-4, encoder_mult=0.1, fusion_mult=0.5)
    ct, mri = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8)

    def step():
        model.train()
        set_encoders_frozen(model, frozen=frozen)
        opt.zero_grad(set_to_none=True)
        model(ct, mri).mean().backward()
        opt.step()

    # one unfrozen step first, so the encoders own optimiser state that must then stay put
    frozen = False
    step()
    enc_params = list(model.ct_encoder.parameters()) + list(model.mri_encoder.parameters())
    before = [p.detach().clone() for p in enc_params]
    avg_before = [opt.state[p]["exp_avg"].clone() for p in enc_params]
    sq_before = [opt.state[p]["exp_avg_sq"].clone() for p in enc_params]
    steps_before = [int(opt.state[p]["step"]) for p in enc_params]
    bn_mean = model.ct_encoder[1].running_mean.clone()
    dec_before = model.decoder.weight.detach().clone()

    frozen = True
    for _ in range(3):
        step()
    for p, b, a, s, n in zip(enc_params, before, avg_before, sq_before, steps_before):
        assert not p.requires_grad and p.grad is None
        torch.testing.assert_close(p.detach(), b, atol=0, rtol=0)
        torch.testing.assert_close(opt.state[p]["exp_avg"], a, atol=0, rtol=0)
        torch.testing.assert_close(opt.state[p]["exp_avg_sq"], s, atol=0, rtol=0)
        assert int(opt.state[p]["step"]) == n
    torch.testing.assert_close(model.ct_encoder[1].running_mean, bn_mean, atol=0, rtol=0)
    assert not torch.equal(model.decoder.weight, dec_before)  # the rest did train

    frozen = False
    step()
    assert all(p.requires_grad for p in enc_params)
    assert not torch.equal(enc_params[0].detach(), before[0])  # released again
