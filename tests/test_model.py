"""FusionNet: shapes, value range, role names, MRI conv1 averaging, checkerboard-free decoder, size."""

from __future__ import annotations

import pytest
import torch
import torchvision

from medfuse.runtime.errors import MedfuseError
from medfuse.train.config import ModelConfig
from medfuse.train.diagnostics import checkerboard_amplitude, checkerboard_ratio
from medfuse.train.encoders import ResNetEncoder, average_rgb_filters, load_backbone_weights
from medfuse.train.model import build_model, count_flops, count_parameters


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig.tiny()).eval()


@pytest.mark.parametrize("size", [(64, 64), (96, 96), (128, 128), (64, 96), (96, 160)])
def test_output_shape_and_range(tiny_model, size):
    ct, mri = torch.rand(2, 3, *size), torch.rand(2, 1, *size)
    with torch.no_grad():
        fused = tiny_model(ct, mri)
    assert fused.shape == (2, 3, *size)
    assert fused.dtype == torch.float32
    assert torch.isfinite(fused).all() and fused.min() >= 0 and fused.max() <= 1


def test_encoder_features_have_stage_channels_and_strides():
    encoder = ResNetEncoder("resnet18", in_channels=1, width=8)
    features = encoder(torch.rand(1, 1, 64, 96))
    assert encoder.out_channels == (8, 16, 32, 64)
    assert [tuple(f.shape[1:]) for f in features] == [(8, 16, 24), (16, 8, 12), (32, 4, 6), (64, 2, 3)]


@pytest.mark.parametrize(
    "shapes",
    [((1, 3, 64, 64), (1, 3, 64, 64)), ((1, 3, 64, 64), (1, 1, 64, 96)), ((1, 3, 70, 64), (1, 1, 70, 64))],
    ids=["mri-3-channels", "size-mismatch", "not-multiple-of-32"],
)
def test_bad_input_shapes_are_rejected(tiny_model, shapes):
    with pytest.raises(ValueError):
        tiny_model(torch.rand(*shapes[0]), torch.rand(*shapes[1]))


def test_submodule_names_follow_roles():
    for roles in (("ct", "mri"), ("vis", "ir")):
        model = build_model(ModelConfig.tiny(roles=roles))
        names = [name for name, _ in model.named_children()]
        assert names == [f"{roles[0]}_encoder", f"{roles[1]}_encoder", "fusion", "decoder", "medical_attention"]
        assert getattr(model, f"{roles[1]}_encoder").conv1.in_channels == 1
        prefixes = {key.split(".")[0] for key in model.state_dict()}
        assert prefixes == set(names)


def test_gradients_reach_every_parameter():
    model = build_model(ModelConfig.tiny()).train()
    fused = model(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64))
    fused.mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []


def _decoder_output(model, ct: torch.Tensor, mri: torch.Tensor) -> torch.Tensor:
    """The decoder's output for a pair (no input skip), before any output head."""
    features = [b(x, y) for b, x, y in zip(model.fusion, model.ct_encoder(ct), model.mri_encoder(mri))]
    return model.decoder(features)


def test_plain_head_skips_medical_attention():
    torch.manual_seed(1)
    model = build_model(ModelConfig.tiny(output_head="plain")).eval()
    ct, mri = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(ct, mri), _decoder_output(model, ct, mri))


def test_residual_head_starts_near_identity_and_can_brighten():
    torch.manual_seed(1)
    model = build_model(ModelConfig.tiny(output_head="residual")).eval()
    ct, mri = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        fused = model(ct, mri)
        decoded = _decoder_output(model, ct, mri)
        assert 0.0 <= fused.min() and fused.max() <= 1.0
        # gate 0.5 at init (up to the 3x3 conv's response): about the decoder output, not half of it
        assert (fused - decoded).abs().mean().item() < 0.15 * decoded.mean().item()
        head = model.medical_attention
        torch.nn.init.constant_(head.layers[2].weight, 0.0)
        torch.nn.init.constant_(head.layers[2].bias, 2.0)  # gate 0.88: brightens by 1.76, clipped at 1
        x = torch.full((1, 3, 8, 8), 0.4)
        assert torch.allclose(head.residual(x), torch.full_like(x, 0.4 * 2 * torch.sigmoid(torch.tensor(2.0)).item()))
        assert head.residual(torch.full_like(x, 0.9)).max().item() == 1.0


def test_input_skip_feeds_the_inputs_to_the_last_decoder_block():
    torch.manual_seed(2)
    model = build_model(ModelConfig.tiny(input_skip=True)).eval()
    assert model.decoder.blocks[-1].conv[0].in_channels == model.decoder.blocks[-2].conv[0].out_channels // 2 + 2
    ct, mri = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        features = [b(x, y) for b, x, y in zip(model.fusion, model.ct_encoder(ct), model.mri_encoder(mri))]
        inputs = torch.cat([ct.mean(dim=1, keepdim=True), mri], dim=1)
        assert torch.equal(model(ct, mri), model.medical_attention(model.decoder(features, inputs)))
    assert ModelConfig().input_skip is False  # the spec's decoder stays the default


def test_full_resolution_refine_starts_as_the_identity_and_then_learns():
    torch.manual_seed(3)
    plain_cfg = ModelConfig.tiny(input_skip=True, output_head="residual")
    plain = build_model(plain_cfg).eval()
    refined = build_model(ModelConfig.tiny(input_skip=True, output_head="residual", refine_channels=8)).eval()
    result = refined.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith("decoder.refine.") for k in result.missing_keys)
    ct, mri = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(refined(ct, mri), plain(ct, mri))  # a checkpoint without the block behaves the same
    # Its first conv sees the decoder features and the two input channels at full size.
    assert refined.decoder.refine.body[0].in_channels == refined.decoder.head.in_channels + 2
    refined.train()
    refined(ct, mri).mean().backward()
    assert refined.decoder.refine.out.weight.grad.abs().sum() > 0  # zero-initialised, not frozen
    assert ModelConfig().refine_channels == 0  # the spec's decoder has no such block
    with pytest.raises(ValueError, match="refine_channels"):
        ModelConfig(refine_channels=-1)


def test_head_bias_init_sets_the_output_of_zero_features():
    model = build_model(ModelConfig.tiny(head_bias_init=0.02))
    assert torch.sigmoid(model.decoder.head.bias).detach() == pytest.approx([0.02] * 3)
    with pytest.raises(ValueError, match="head_bias_init"):
        ModelConfig(head_bias_init=1.0)


def test_average_rgb_filters_is_the_channel_mean():
    weight = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    gray = average_rgb_filters(weight)
    assert gray.shape == (2, 1, 2, 2)
    assert torch.equal(gray[:, 0], (weight[:, 0] + weight[:, 1] + weight[:, 2]) / 3)
    with pytest.raises(ValueError):
        average_rgb_filters(torch.zeros(2, 1, 2, 2))


def test_backbone_weights_from_local_torchvision_file(tmp_path):
    torch.manual_seed(2)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(ModelConfig(encoder="resnet18", width=64)).eval()
    load_backbone_weights(model, path)

    conv1 = reference.conv1.weight
    assert torch.equal(model.ct_encoder.conv1.weight, conv1)
    assert torch.allclose(model.mri_encoder.conv1.weight, conv1.mean(dim=1, keepdim=True))
    # The CT encoder is torchvision's ResNet18 up to layer4, tensor for tensor.
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours = model.ct_encoder(image)[-1]
        stem = reference.maxpool(reference.relu(reference.bn1(reference.conv1(image))))
        theirs = reference.layer4(reference.layer3(reference.layer2(reference.layer1(stem))))
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_backbone_weights_that_do_not_fit_are_a_user_error(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(MedfuseError, match="do not fit"):
        load_backbone_weights(build_model(ModelConfig.tiny()), path)
    with pytest.raises(MedfuseError, match="not found"):
        load_backbone_weights(build_model(ModelConfig.tiny()), tmp_path / "absent.pth")


def _smooth_pair(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    blob = torch.exp(-((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.08)
    return blob.expand(2, 3, size, size).clone(), (0.2 + 0.6 * xx).expand(2, 1, size, size).clone()


def _grid(mode: str, seed: int) -> tuple[float, float]:
    """(grid amplitude in 8-bit gray levels, grid share of the output's variation) of a fresh model."""
    # Train mode: batch statistics keep every layer at unit scale, so a fresh model's output varies
    # by a few percent (in eval mode its untrained BN statistics flatten it to ~1e-6).
    torch.manual_seed(seed)
    model = build_model(ModelConfig.tiny(decoder_upsample=mode)).train()
    with torch.no_grad():
        fused = model(*_smooth_pair(128))
    return 255 * checkerboard_amplitude(fused).max().item(), checkerboard_ratio(fused).max().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_decoder_prints_no_checkerboard_and_kernel2_does(seed):
    # Measured over seeds 0-2 (tiny and default widths alike): resize-conv and transpose4 at most
    # 0.03 gray levels and 0.4 % of the variation; kernel-2 transposed conv 2-9 gray levels, 28-74 %.
    for mode in ("resize-conv", "transpose4"):
        levels, share = _grid(mode, seed)
        assert levels < 0.2 and share < 0.02, mode
    levels, share = _grid("transpose2", seed)
    assert levels > 1.0 and share > 0.2


def test_checkerboard_amplitude_finds_a_grid_and_ignores_smooth_content():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    smooth = torch.sin(xx / 9) * torch.cos(yy / 13)
    grid = 0.01 * (1 - 2 * ((xx + yy) % 2))
    assert checkerboard_amplitude(smooth).item() < 1e-3
    assert checkerboard_amplitude(smooth + grid).item() == pytest.approx(0.01, rel=0.1)


def test_default_config_size_matches_spec():
    # Meta tensors: no memory and no arithmetic, only shapes.
    with torch.device("meta"):
        model = build_model(ModelConfig())
        spec_prototype = build_model(ModelConfig(decoder_upsample="transpose2"))
        bilinear_transpose = build_model(ModelConfig(decoder_upsample="transpose4"))
    assert 54.5e6 < count_parameters(model) < 56e6  # 55.19 M
    assert 27e9 < count_flops(model, 256) < 29.5e9  # 28.2 GFLOP per 256x256 pair
    # The prototype decoder gives the reference figures (about 54 M, about 25 GFLOP).
    assert 54e6 < count_parameters(spec_prototype) < 54.6e6
    assert 25e9 < count_flops(spec_prototype, 256) < 26e9
    assert 56e6 < count_parameters(bilinear_transpose) < 57e6  # 56.41 M, 26.5 GFLOP
    assert 26e9 < count_flops(bilinear_transpose, 256) < 27e9


@pytest.mark.slow
@pytest.mark.parametrize("refine_channels", [0, 8])
def test_tiny_model_exports_to_onnx_with_dynamic_batch_and_size(tmp_path, refine_channels):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(4)
    model = build_model(ModelConfig.tiny(input_skip=bool(refine_channels), refine_channels=refine_channels)).eval()
    if refine_channels:  # its last conv starts at zero: give it weights so the export is tested doing something
        torch.nn.init.normal_(model.decoder.refine.out.weight, std=0.1)
    batch, height, width = torch.export.Dim("batch", max=64), torch.export.Dim("h", max=64), torch.export.Dim("w", max=64)
    dims = {0: batch, 2: 32 * height, 3: 32 * width}
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        model,
        (torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)),
        path,
        dynamo=True,
        opset_version=18,
        input_names=["ct", "mri"],
        output_names=["fused"],
        dynamic_shapes={"a": dims, "b": dims},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 64, 64), (2, 96, 128)):
        ct, mri = torch.rand(shape[0], 3, *shape[1:]), torch.rand(shape[0], 1, *shape[1:])
        with torch.no_grad():
            expected = model(ct, mri).numpy()
        (fused,) = session.run(None, {"ct": ct.numpy(), "mri": mri.numpy()})
        assert fused.shape == expected.shape
        assert abs(fused - expected).max() < 1e-5


def test_model_config_round_trips_and_rejects_bad_values():
    cfg = ModelConfig.tiny(roles=("vis", "ir"), decoder_upsample="transpose4")
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert ModelConfig.from_dict(cfg.to_dict()).roles == ("vis", "ir")
    with pytest.raises(ValueError, match="unknown model config fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "depth": 50})
    for bad in ({"encoder": "resnet50"}, {"width": 12}, {"roles": ("ct", "pet")}, {"decoder_upsample": "pixelshuffle"}):
        with pytest.raises(ValueError):
            ModelConfig(**bad)


def test_medical_gate_init_sets_the_starting_gate():
    for gate in (0.5, 0.95):
        attention = build_model(ModelConfig.tiny(medical_gate_init=gate)).medical_attention
        with torch.no_grad():
            assert attention(torch.ones(1, 3, 8, 8)).mean().item() == pytest.approx(gate, abs=0.15)
            assert attention.layers(torch.zeros(1, 3, 8, 8)).mean().item() == pytest.approx(gate, abs=0.02)
