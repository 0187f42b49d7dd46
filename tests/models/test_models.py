"""Backbones: WRN-28-k against the reference's golden parameter counts and init (docs/reference/common.md#wrn-28-k),
the small CNN's shapes, the timm adapter, and the interface every model shares."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssl_bench.config import ModelConfig
from ssl_bench.errors import ConfigError
from ssl_bench.models import create_model, model_names
from ssl_bench.models.wrn import PreActBlock, WideResNet, wrn_scales
from ssl_bench.registry import MODELS


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


def check_interface(model: nn.Module, channels: int, size: int, num_classes: int) -> torch.Tensor:
    """Shapes of forward/embed/feature_map and forward == head(embed); returns the feature map."""
    model.eval()
    x = images(2, channels, size)
    with torch.no_grad():
        logits = model(x)
        emb = model.embed(x)
        fmap = model.feature_map(x)
    assert logits.shape == (2, num_classes)
    assert emb.shape == (2, model.embed_dim)
    assert fmap.shape[:2] == (2, model.embed_dim)
    assert isinstance(model.head, nn.Linear)
    torch.testing.assert_close(model.head(emb), logits)
    assert torch.isfinite(logits).all()
    return fmap


# ----------------------------------------------------------------------------------------------------------
# WRN-28-k


@pytest.mark.parametrize(("conv_bias", "expected"), [(False, 1_467_610), (True, 1_469_642)])
def test_wrn28_2_parameter_count_matches_reference(conv_bias: bool, expected: int) -> None:
    model = create_model(ModelConfig(name="wrn28", width=2, conv_bias=conv_bias), 10, 3, 32)
    assert n_params(model) == expected


def test_wrn28_8_parameter_count() -> None:
    # FixMatch's CIFAR-100 backbone (filters=128): "~23M params" in docs/reference/common.md#wrn-28-k
    model = create_model(ModelConfig(name="wrn28", width=8), 100, 3, 32)
    assert n_params(model) == 23_401_012
    assert model.embed_dim == 512


def test_wrn28_depth_is_28() -> None:
    # 1 stem + 24 3x3 convs + 3 1x1 shortcut convs (docs/reference/common.md#wrn-28-k)
    model = create_model(ModelConfig(name="wrn28"), 10, 3, 32)
    kernels = [m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(kernels) == 28
    assert kernels.count((1, 1)) == 3
    assert model.stem.out_channels == 16
    blocks = list(model.blocks)
    assert [b.activate_before_residual for b in blocks] == [True] + [False] * 11
    assert [b.conv1.stride[0] for b in blocks] == [1, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1]
    assert [b.conv2.out_channels for b in blocks] == [32] * 4 + [64] * 4 + [128] * 4


def test_wrn28_interface_and_shapes() -> None:
    model = create_model(ModelConfig(name="wrn28"), 10, 3, 32)
    assert isinstance(model, WideResNet)
    assert model.embed_dim == 128
    fmap = check_interface(model, 3, 32, 10)
    assert fmap.shape == (2, 128, 8, 8)


def test_wrn28_one_channel_input() -> None:
    model = create_model(ModelConfig(name="wrn28"), 7, 1, 16)
    fmap = check_interface(model, 1, 16, 7)
    assert fmap.shape == (2, 64, 8, 8)  # 16 px -> 2 scales, one stride-2 stage


@pytest.mark.parametrize(
    ("image_size", "scales", "expected"),
    [(32, 0, 3), (28, 0, 3), (96, 0, 5), (16, 0, 2), (8, 0, 1), (4, 0, 1), (2, 0, 1), (96, 4, 4)],
)
def test_wrn_scales_from_image_size(image_size: int, scales: int, expected: int) -> None:
    cfg = ModelConfig(name="wrn28", scales=scales)
    assert wrn_scales(cfg, image_size) == expected
    model = create_model(cfg, 10, 3, image_size)
    assert len(model.blocks) == 4 * expected
    assert model.embed_dim == 32 * 2 ** (expected - 1)


def test_wrn28_batchnorm_and_leaky_settings() -> None:
    model = create_model(ModelConfig(name="wrn28"), 10, 3, 32)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 25  # two per block + the final one
    assert all(bn.momentum == 0.001 and bn.eps == 0.001 for bn in bns)
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.1 for a in acts)
    custom = create_model(ModelConfig(name="wrn28", bn_momentum=0.01, bn_eps=1e-6, leaky_slope=0.2), 10, 3, 32)
    assert all(m.momentum == 0.01 and m.eps == 1e-6 for m in custom.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(m.negative_slope == 0.2 for m in custom.modules() if isinstance(m, nn.LeakyReLU))


def test_wrn28_init_statistics() -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="wrn28", conv_bias=True), 10, 3, 32)
    # He normal over fan_out: std = sqrt(2 / (k*k*out)); the last stage's 3x3 convs hold 147k weights each
    w = model.blocks[-1].conv2.weight
    assert w.shape == (128, 128, 3, 3)
    assert w.std().item() == pytest.approx(math.sqrt(2 / (9 * 128)), rel=0.1)
    assert abs(w.mean().item()) < 0.02 * math.sqrt(2 / (9 * 128))  # ~8 standard errors of the mean
    shortcut = model.blocks[8].shortcut.weight  # 1x1, 64 -> 128
    assert shortcut.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.1)
    # Glorot normal truncated at 2 std: no weight beyond 2 std, and the empirical std shrinks by ~0.88
    std = math.sqrt(2 / (128 + 10))
    head = model.head.weight
    assert head.abs().max().item() <= 2 * std
    assert head.std().item() == pytest.approx(0.8796 * std, rel=0.1)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert m.bias is not None and torch.all(m.bias == 0)
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize("index", [0, 4, 5])
def test_wrn_block_shortcut_follows_reference(index: int) -> None:
    # block 0: shortcut from the activated input; block 4: 1x1 projection of the raw input; block 5: identity
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="wrn28"), 10, 3, 32).eval()
    block: PreActBlock = model.blocks[index]
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        a = block.act(block.bn1(x))
        h = block.conv2(block.act(block.bn2(block.conv1(a))))
        if index == 0:
            expected = block.shortcut(a) + h
        elif index == 4:
            expected = block.shortcut(x) + h
        else:
            assert block.shortcut is None
            expected = x + h
        torch.testing.assert_close(block(x), expected)


# ----------------------------------------------------------------------------------------------------------
# small CNN


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("size", "fmap_size"), [(8, 4), (16, 4), (32, 8)])
def test_small_cnn_shapes(channels: int, size: int, fmap_size: int) -> None:
    model = create_model(ModelConfig(name="small_cnn"), 10, channels, size)
    assert model.embed_dim == 128
    fmap = check_interface(model, channels, size, 10)
    assert fmap.shape == (2, 128, fmap_size, fmap_size)


def test_small_cnn_parameter_count_and_settings() -> None:
    model = create_model(ModelConfig(name="small_cnn"), 10, 3, 16)
    assert n_params(model) == 94_762
    assert all(m.momentum == 0.001 and m.eps == 0.001 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    wide = create_model(ModelConfig(name="small_cnn", width=4), 10, 3, 16)
    assert wide.embed_dim == 256


def test_small_cnn_large_images() -> None:
    model = create_model(ModelConfig(name="small_cnn", width=1), 5, 3, 96)
    fmap = check_interface(model, 3, 96, 5)
    assert fmap.shape == (2, 64, 24, 24)


# ----------------------------------------------------------------------------------------------------------
# every registered model


@pytest.mark.parametrize("name", ["wrn28", "small_cnn"])
def test_every_parameter_gets_a_finite_gradient(name: str) -> None:
    model = create_model(ModelConfig(name=name), 10, 3, 16).train()
    loss = nn.functional.cross_entropy(model(images(4, 3, 16)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_registry_names() -> None:
    assert {"wrn28", "small_cnn"} <= set(MODELS.names())
    assert "timm:<name>" in model_names()


def test_unknown_registered_model_lists_choices() -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet_nope'") as info:
        create_model(ModelConfig(name="resnet_nope"), 10, 3, 32)
    message = str(info.value)
    assert "small_cnn" in message and "wrn28" in message and "timm:" in message
    assert "\n" not in message


# ----------------------------------------------------------------------------------------------------------
# timm


@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 16)])
def test_timm_resnet18(channels: int, size: int) -> None:
    model = create_model(ModelConfig(name="timm:resnet18"), 10, channels, size)
    assert model.embed_dim == 512
    assert model.head is model.model.fc
    check_interface(model, channels, size, 10)
    # the classifier is stored once, inside the timm model
    assert n_params(model) == n_params(model.model)
    assert len(model.state_dict()) == len(model.model.state_dict())


def test_timm_fixed_size_model_is_built_for_the_image_size() -> None:
    model = create_model(ModelConfig(name="timm:vit_tiny_patch16_224"), 10, 3, 32)
    model.eval()
    x = images(2, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.head(model.embed(x)), model(x))
    assert model.embed_dim == 192


@pytest.mark.parametrize("name", ["timm:not_a_model_xyz", "timm:"])
def test_timm_unknown_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown timm model '.*'; see timm.list_models\(\)"):
        create_model(ModelConfig(name=name), 10, 3, 32)


@pytest.mark.parametrize(
    "name,width,channels,size",
    [
        ("small_cnn", 1, 1, 8),
        ("small_cnn", 3, 3, 16),
        ("wrn28", 2, 3, 32),
        ("wrn28", 1, 1, 8),
        ("timm:resnet18", 1, 3, 32),
    ],
)
def test_parameter_bytes_from_shapes_match_the_built_model(name, width, channels, size):
    from ssl_bench.models import parameter_bytes

    cfg = ModelConfig(name=name, width=width)
    built = create_model(cfg, 10, channels, size)
    assert parameter_bytes(cfg, 10, channels, size) == sum(p.numel() * p.element_size() for p in built.parameters())
    # the initialiser ran on the real model (the meta build skipped it): the weights are not all zero
    assert any(p.abs().sum() > 0 for p in built.parameters() if p.dim() > 1)
