"""The TorchSSL / USB RandAugment policy (``randaugment_usb``, docs/reference/common.md#torchssl-and-usb) against the
reference code's semantics, one PIL image at a time: each op at fixed magnitudes, the cutout geometry, whole drawn
chains in the drawn order; then its sampling distribution, its determinism, the validity of what it draws, and its PIL
pipeline for ``bench train --pipeline reference``.

``reference_op`` and ``reference_cutout`` below restate what microsoft/Semi-supervised-learning
``semilearn/datasets/augmentation/randaugment.py`` (= TorchSSL ``datasets/augmentation/randaugment.py``) does with a
magnitude ``val`` (see ``ssl_bench/augment/usb.py``), written for these tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from ssl_bench.augment import ops, pil_reference, usb
from ssl_bench.augment.policies import Chain, create_policy
from ssl_bench.augment.usb import USB_OPS, USB_RANGES, RandAugmentUSB, cutout_params, native_params
from ssl_bench.config import AugmentConfig
from ssl_bench.errors import ConfigError
from tests.augment.test_ops import from_pil, to_pil

SMOKE = Path(__file__).resolve().parents[2] / "recipes" / "smoke.toml"
ENHANCE = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast}
ENHANCE["sharpness"] = ImageEnhance.Sharpness


def reference_op(img: Image.Image, name: str, val: float) -> Image.Image:
    w, h = img.size
    if name == "autocontrast":
        return ImageOps.autocontrast(img)
    if name == "equalize":
        return ImageOps.equalize(img)
    if name == "identity":
        return img
    if name in ENHANCE:
        return ENHANCE[name](img).enhance(val)
    if name == "posterize":
        return ImageOps.posterize(img, max(1, int(val)))
    if name == "rotate":
        return img.rotate(val)
    if name == "solarize":
        return ImageOps.solarize(img, val)
    data = {
        "shear_x": (1, val, 0, 0, 1, 0),
        "shear_y": (1, 0, 0, val, 1, 0),
        "translate_x": (1, 0, val * w, 0, 1, 0),
        "translate_y": (1, 0, 0, 0, 1, val * h),
    }[name]
    return img.transform(img.size, Image.AFFINE, data)


def reference_cutout(img: Image.Image, v: float, x: float, y: float) -> Image.Image:
    """CutoutAbs with the centre already drawn; grey images get the colour's L (the reference needs RGB)."""
    if v <= 0:
        return img
    w, h = img.size
    x0, y0 = int(max(0, x - v / 2.0)), int(max(0, y - v / 2.0))
    img = img.copy()
    colour = (125, 123, 114) if img.mode == "RGB" else 123
    ImageDraw.Draw(img).rectangle((x0, y0, min(w, x0 + v), min(h, y0 + v)), colour)
    return img


def images(n: int, c: int = 3, side: int = 32, seed: int = 0) -> torch.Tensor:
    """Noise, plus a low-contrast, a two-valued and a constant image for the histogram ops."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, side, side), dtype=torch.uint8, generator=g)
    if n >= 4:
        x[1] = x[1] // 4 + 100
        x[2] = torch.where(x[2] > 127, 200, 30).to(torch.uint8)
        x[3] = 77
    return x


# ------------------------------------------------------------------------------------------------------------------
# against the reference, one image at a time


def fixed_magnitudes(name: str) -> list[float]:
    """Both ends of the op's range (the high end as the largest float32 below it) and interior values."""
    low, high = USB_RANGES[name]
    top = float(torch.nextafter(torch.tensor(high), torch.tensor(low)))
    inner = [low + (high - low) * f for f in (0.013, 0.37, 0.5, 0.81)]
    return [low, *inner, top, *{"solarize": [0.5, 100.3, 255.2], "rotate": [-0.4, 12.25]}.get(name, [])]


@pytest.mark.parametrize("name", USB_OPS)
@pytest.mark.parametrize("c,side", [(3, 32), (1, 16), (3, 96)])
def test_each_op_at_fixed_magnitudes_equals_the_reference(name, c, side):
    values = torch.tensor(fixed_magnitudes(name), dtype=torch.float32)
    n = len(values)
    x = images(n, c, side, seed=side + c)
    ids = torch.full((n, 1), USB_OPS.index(name))
    params = torch.zeros(n, 1, 3)
    params[:, 0, 0] = native_params(ids, values[:, None], side, side)[:, 0]
    out = ops.apply_ops(x, list(USB_OPS), ids, params, fill=0, cutout_fill=0)
    for i in range(n):
        expected = from_pil(reference_op(to_pil(x[i]), name, float(values[i])))
        assert torch.equal(out[i], expected), (name, float(values[i]))


def test_native_parameters_of_the_magnitudes():
    """Posterize truncates, translate is a fraction of the side, autocontrast and equalize are the full op."""
    names = ["posterize", "posterize", "translate_x", "translate_y", "autocontrast", "equalize", "solarize", "identity"]
    ids = torch.tensor([[USB_OPS.index(k)] for k in names])
    val = torch.tensor([[4.0], [7.9999995], [-0.3], [0.25], [0.3], [0.9], [100.3], [0.5]])
    got = native_params(ids, val, 64, 32)[:, 0].tolist()
    assert got == pytest.approx([4.0, 7.0, -0.3 * 32, 0.25 * 64, 1.0, 1.0, 100.3, 0.0], rel=1e-6)


CUTOUT_CASES = [  # (v px, x, y) at 32 px: x, y in (1, 32] as numpy's uniform(32) draws them
    (0.0, 10.0, 10.0),  # no cutout
    (1e-3, 5.5, 7.2),  # a single pixel
    (15.999, 32.0, 32.0),  # clipped at the bottom-right corner
    (15.999, 1.0001, 1.0001),  # clipped at the top-left: the corner is max(0, .)
    (7.5, 16.3, 3.9),
    (8.0, 12.0, 20.0),  # an integer side: int(v) + 1 = 9 px
    (3.2, 31.9, 1.5),
]


@pytest.mark.parametrize("c", [3, 1])
def test_cutout_geometry_and_fill_equal_image_draw(c):
    n = len(CUTOUT_CASES)
    x = images(n, c, 32, seed=4)
    v, cx, cy = (torch.tensor(col, dtype=torch.float32) for col in zip(*CUTOUT_CASES, strict=True))
    params = cutout_params(v, cx, cy)[:, None, :]
    fill = (125, 123, 114) if c == 3 else 123
    out = ops.apply_ops(x, ["cutout"], torch.zeros(n, 1, dtype=torch.int64), params, fill=0, cutout_fill=fill)
    for i in range(n):
        expected = reference_cutout(to_pil(x[i]), float(v[i]), float(cx[i]), float(cy[i]))
        assert torch.equal(out[i], from_pil(expected)), CUTOUT_CASES[i]
    assert torch.equal(out[0], x[0])
    assert int((out[1] != x[1]).any(0).sum()) <= 1


@pytest.mark.parametrize("c,side,n", [(3, 32, 300), (1, 16, 150), (3, 96, 40)])
def test_drawn_chains_equal_the_reference_in_the_drawn_order(c, side, n):
    """The policy's own draws, applied by the policy and by the reference code in PIL: every pixel agrees, because
    the ops run one slot at a time (geometric ones are not deferred to one composed warp)."""
    ra = RandAugmentUSB()
    x = images(n, c, side, seed=side)
    ids, val, v, cx, cy = ra.draw(n, side, side, torch.Generator().manual_seed(side), torch.device("cpu"))
    params = torch.zeros(n, 4, 3)
    params[:, :3, 0] = native_params(ids, val, side, side)
    params[:, 3] = cutout_params(v, cx, cy)
    cut = torch.full((n, 1), len(USB_OPS))
    out = ra.apply(x, torch.cat([ids, cut], 1), params)
    for i in range(n):
        img = to_pil(x[i])
        for k, m in zip(ids[i].tolist(), val[i].tolist(), strict=True):
            img = reference_op(img, USB_OPS[k], m)
        img = reference_cutout(img, float(v[i]), float(cx[i]), float(cy[i]))
        assert torch.equal(out[i], from_pil(img)), (i, [USB_OPS[k] for k in ids[i].tolist()], val[i].tolist())


def test_pil_pipeline_ops_are_the_reference():
    x = images(6, 3, 32, seed=9)
    for name in USB_OPS:
        for i, m in enumerate(fixed_magnitudes(name)[:6]):
            got = pil_reference.usb_pil_op(to_pil(x[i]), name, m)
            assert torch.equal(from_pil(got), from_pil(reference_op(to_pil(x[i]), name, m))), (name, m)
    for c in (3, 1):
        g = images(len(CUTOUT_CASES), c, 32, seed=5)
        for i, (v, cx, cy) in enumerate(CUTOUT_CASES):
            got = pil_reference.usb_pil_cutout(to_pil(g[i]), v, cx, cy)
            assert torch.equal(from_pil(got), from_pil(reference_cutout(to_pil(g[i]), v, cx, cy)))


# ------------------------------------------------------------------------------------------------------------------
# sampling


def test_sampling_distribution():
    """Every op equally likely in every slot and always applied; magnitudes uniform inside their ranges; posterize 4-7
    bits; the cutout always in the last slot, side int(v) + 1 <= half the side, v uniform."""
    n, side = 30000, 32
    ra = RandAugmentUSB()
    ids, val, v, cx, cy = ra.draw(n, side, side, torch.Generator().manual_seed(0), torch.device("cpu"))
    counts = torch.bincount(ids.flatten(), minlength=len(USB_OPS)).double() / ids.numel()
    sigma = (1 / 14 * 13 / 14 / ids.numel()) ** 0.5
    assert ((counts - 1 / 14).abs() < 4 * sigma).all(), counts  # identity no likelier than the others
    for d in range(3):
        assert scipy.stats.chisquare(torch.bincount(ids[:, d], minlength=14).numpy()).pvalue > 1e-3
    for k, (name, (low, high)) in enumerate(USB_RANGES.items()):
        m = val[ids == k].double()
        assert float(m.min()) >= low and float(m.max()) < high, name
        assert scipy.stats.kstest(((m - low) / (high - low)).numpy(), "uniform").pvalue > 1e-3, name
    ids_all, params = ra.sample(n, side, side, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(ids_all[:, :3], ids) and (ids_all[:, 3] == len(USB_OPS)).all()
    post = params[:, :3, 0][ids == USB_OPS.index("posterize")]
    assert set(post.unique().tolist()) == {4.0, 5.0, 6.0, 7.0}
    assert abs(float((post == 7).double().mean()) - 0.25) < 0.03
    assert float(params[:, :3, 0][ids == USB_OPS.index("translate_x")].abs().max()) <= 0.3 * side
    assert (params[:, :3, 0][ids == USB_OPS.index("autocontrast")] == 1).all()
    side_px, top, left = params[:, 3, 0], params[:, 3, 1], params[:, 3, 2]
    assert float(side_px.min()) >= 0 and float(side_px.max()) == side / 2  # 1 .. 16 px at 32 px
    assert scipy.stats.kstest((v / (side / 2)).numpy(), "uniform").pvalue > 1e-3
    assert float(cx.min()) > 1 and float(cx.max()) <= side and float(cy.min()) > 1
    corner = left - torch.floor(side_px / 2)
    assert float(corner.min()) == 0 and float(corner.max()) == side - 1
    assert float((top - torch.floor(side_px / 2)).max()) == side - 1


def test_cutout_bound_follows_augment_cutout():
    ra = create_policy("randaugment_usb", AugmentConfig(cutout=0.25), hflip=True)
    assert isinstance(ra, Chain) and ra.parts[1].cutout == 0.25
    _, params = ra.parts[1].sample(5000, 96, 96, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert float(params[:, 3, 0].max()) == 24  # int(v) + 1 with v < 0.25 x 96
    with pytest.raises(ConfigError, match="augment.cutout"):
        RandAugmentUSB(cutout=1.5)


def test_seeded_varied_and_starts_from_the_weak_view():
    x = images(64)
    pol = create_policy("randaugment_usb", AugmentConfig(), hflip=True)
    a = pol(x, torch.Generator().manual_seed(3))
    assert torch.equal(
        a, create_policy("randaugment_usb", AugmentConfig(), hflip=True)(x, torch.Generator().manual_seed(3))
    )
    assert not torch.equal(a, pol(x, torch.Generator().manual_seed(4)))
    same = torch.stack([x[0]] * 64)
    assert len({tuple(o.flatten()[::7].tolist()) for o in pol(same, torch.Generator().manual_seed(5))}) > 60
    # the weak flip-and-translate first, drawing from the same generator, then the 3 ops and the cutout
    weak, strong = pol.parts
    g1, g2 = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    assert torch.equal(pol(x, g1), strong(weak(x, g2), g2))
    assert torch.equal(g1.get_state(), g2.get_state())


@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3), (96, 3), (33, 3)])
def test_all_sizes_and_channels(size, channels):
    out = create_policy("randaugment_usb", AugmentConfig(), hflip=True)(
        images(8, channels, size), torch.Generator().manual_seed(0)
    )
    assert out.shape == (8, channels, size, size) and out.dtype == torch.uint8


def test_draws_only_parameters_that_pass_validation(monkeypatch):
    """The policy calls apply_ops with check=False: what it draws must pass ops.validate anyway."""
    checked = []

    def checking(imgs, names, ids, params, fill, cutout_fill, check=True):
        ops.validate(imgs, names, ids, params, fill, cutout_fill)
        checked.append(ids.shape[1])
        return ops.apply_ops(imgs, names, ids, params, fill, cutout_fill)

    monkeypatch.setattr(usb, "apply_ops", checking)
    for seed in range(4):
        for size, c in ((8, 1), (32, 3), (96, 3)):
            RandAugmentUSB()(images(200, c, size, seed), torch.Generator().manual_seed(seed))
    assert checked == [1, 1, 2] * 12


# ------------------------------------------------------------------------------------------------------------------
# the PIL pipeline (bench train --pipeline reference)


def test_pil_pipeline_runs_and_the_reference_feed_accepts_it():
    from ssl_bench.benchmarks.reference import check_reference, pil_view
    from ssl_bench.plan import expand, load_recipe

    assert pil_reference.PIL_PIPELINES["randaugment_usb"] is pil_reference.PILRandAugmentUSB
    pipeline = pil_reference.PILRandAugmentUSB(32)
    np.random.seed(0)
    pil_reference.random.seed(0)
    for c in (3, 1):
        out = [np.asarray(pipeline(to_pil(x))) for x in images(20, c, 32)]
        assert all(o.shape[:2] == (32, 32) for o in out)
    constant = to_pil(torch.full((3, 32, 32), 200, dtype=torch.uint8))
    marked = [(np.asarray(pipeline(constant)) == (125, 123, 114)).all(-1).sum() for _ in range(200)]
    assert max(marked) <= 16 * 16 and np.mean([m > 0 for m in marked]) > 0.9
    run = expand(load_recipe(SMOKE, ["augment.strong=randaugment_usb"]))[0]
    check_reference(run)
    assert isinstance(pil_view("randaugment_usb", run, 32, hflip=True), pil_reference.PILRandAugmentUSB)
