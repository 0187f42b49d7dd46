import numpy as np
import pytest
import torch

from ssl_bench.augment.policies import create_policy, effective_flip
from ssl_bench.augment.weak import reflect_index, translate_reflect, weak_augment
from ssl_bench.config import AugmentConfig
from ssl_bench.errors import ConfigError


def reference_translate(img: np.ndarray, dx: int, dy: int, pad: int) -> np.ndarray:
    """Per-image reference: reflect-pad by ``pad`` and crop the window at offset (pad - dy, pad - dx)."""
    padded = np.pad(img, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    h, w = img.shape[1:]
    return padded[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w]


def test_reflect_index():
    assert reflect_index(torch.arange(-3, 8), 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]


@pytest.mark.parametrize("size,pad", [(8, 1), (16, 2), (32, 4), (96, 12)])
def test_translate_equals_pad_and_crop(size, pad):
    g = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (6, 3, size, size), dtype=torch.uint8, generator=g)
    dx = torch.randint(-pad, pad + 1, (6,), generator=g)
    dy = torch.randint(-pad, pad + 1, (6,), generator=g)
    out = translate_reflect(images, dx, dy)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for i in range(6):
        ref = reference_translate(images[i].numpy(), int(dx[i]), int(dy[i]), pad)
        assert np.array_equal(out[i].numpy(), ref)


def test_zero_shift_is_identity():
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    zero = torch.zeros(4, dtype=torch.int64)
    assert torch.equal(translate_reflect(images, zero, zero), images)


def test_weak_policy_per_sample_and_seeded():
    images = torch.arange(64, dtype=torch.uint8).reshape(1, 1, 8, 8).repeat(64, 3, 1, 1)
    pol = create_policy("weak", AugmentConfig(), hflip=True)
    a = pol(images, torch.Generator().manual_seed(0))
    b = pol(images, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    distinct = {tuple(x.flatten().tolist()) for x in a}
    assert len(distinct) > 10  # different flips/shifts within one batch


def test_flip_only_where_allowed():
    img = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(200, 1, 1, 1)
    out = weak_augment(img, torch.Generator().manual_seed(1), flip=True, translate=0.0)
    flipped = (out == img.flip(-1)).all(dim=(1, 2, 3))
    assert 70 < int(flipped.sum()) < 130  # p = 0.5
    out = weak_augment(img, torch.Generator().manual_seed(1), flip=False, translate=0.0)
    assert torch.equal(out, img)
    pol = create_policy("weak", AugmentConfig(), hflip=False)
    assert pol.flip is False


@pytest.mark.parametrize(
    ("flip", "hflip", "flips"),
    [
        ("dataset", True, True),
        ("dataset", False, False),
        ("always", True, True),
        ("always", False, True),  # AdaMatch's sm flips digits too (docs/reference/common.md#weak-augmentation)
        ("never", True, False),
        ("never", False, False),
    ],
)
def test_flip_choice_against_the_dataset(flip, hflip, flips):
    img = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(200, 1, 1, 1)
    cfg = AugmentConfig(flip=flip, translate=0.0)
    for name in ("weak", "randaugment", "ctaugment"):
        pol = create_policy(name, cfg, hflip=hflip)
        weak = pol if name == "weak" else pol.parts[0]
        out = weak(img, torch.Generator().manual_seed(1))
        n_flipped = int((out == img.flip(-1)).all(dim=(1, 2, 3)).sum())
        assert (70 < n_flipped < 130) if flips else n_flipped == 0, (name, n_flipped)
        assert effective_flip(cfg, hflip) is flips
    with pytest.raises(ConfigError, match=r"augment\.flip must be one of dataset, always, never; got 'sideways'"):
        create_policy("weak", AugmentConfig(flip="sideways"), hflip=True)


def test_bad_images_rejected():
    pol = create_policy("weak", AugmentConfig(), hflip=True)
    with pytest.raises(ConfigError, match="uint8 image tensor"):
        pol(torch.zeros(2, 3, 8, 8), torch.Generator())
    with pytest.raises(ConfigError, match="uint8 image tensor"):
        pol(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.Generator())
    with pytest.raises(ConfigError, match="unknown augmentation 'nope'"):
        create_policy("nope", AugmentConfig(), hflip=True)


def test_weak_equals_flip_then_pad_and_crop():
    """The fused gather equals the per-image reference: flip, reflect-pad, crop (draws replayed from the seed)."""
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    out = weak_augment(images, torch.Generator().manual_seed(3), flip=True, translate=0.125)
    g = torch.Generator().manual_seed(3)
    flips = torch.rand(32, generator=g) < 0.5
    dy = torch.randint(-2, 3, (32,), generator=g)
    dx = torch.randint(-2, 3, (32,), generator=g)
    assert flips.any() and (~flips).any()
    for i in range(32):
        img = images[i].numpy()[:, :, ::-1] if flips[i] else images[i].numpy()
        assert np.array_equal(out[i].numpy(), reference_translate(img, int(dx[i]), int(dy[i]), 2))
