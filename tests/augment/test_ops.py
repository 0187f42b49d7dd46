"""Reference tests of the batched augmentation ops against per-image PIL
(docs/reference/augmentation.md#randaugment-fixmatch / docs/reference/augmentation.md#ctaugment).

Tolerances, per op family:
* pixel ops (identity, autocontrast, equalize, invert, posterize, solarize, blur, smooth, brightness, color,
  contrast, sharpness): exact, max abs diff 0. The integer ops are table lookups; the blend / enhance / filter ops
  repeat Blend.c's float32 arithmetic and the filters' integer sums, so no rounding slack is needed.
* nearest warps (rotate, shear, translate, rescale with NEAREST / BOX): exact, 100 % of pixels identical (the brief's
  floor was 98 %); PIL's two nearest engines (16.16 fixed point, double accumulation) are reproduced.
* rescale with interpolation, against PIL's crop + resize of smooth images: per-image mean abs diff <= 2 grey levels
  for BILINEAR, <= 3 for BICUBIC / LANCZOS (grid_sample's bicubic a = -0.75 vs PIL's -0.5, Lanczos approximated
  by bicubic) and <= 7 for HAMMING (approximated by bilinear). The composed warp also samples neighbours outside the
  crop where PIL clamps at the crop edge.
* cutout: exact.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from ssl_bench.augment import geometry, host_reads, ops, pixel
from ssl_bench.errors import ConfigError

SHAPES = [(3, 32), (1, 8), (1, 96)]  # (channels, side)


def random_images(n: int, c: int, side: int, seed: int) -> torch.Tensor:
    """Uniform noise plus the corner cases of the histogram ops: low contrast, two values, a constant image."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, side, side), dtype=torch.uint8, generator=g)
    if n >= 4:
        x[1] = x[1] // 4 + 100
        x[2] = torch.where(x[2] > 127, 200, 30).to(torch.uint8)
        x[3] = 77
    return x


def smooth_images(n: int, c: int, side: int, seed: int) -> torch.Tensor:
    """Natural-looking (band-limited) images for the interpolating resamplers."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, c, max(side // 4, 2), max(side // 4, 2), generator=g) * 255
    return F.interpolate(low, size=(side, side), mode="bilinear", align_corners=False).round().to(torch.uint8)


def to_pil(x: torch.Tensor) -> Image.Image:
    a = x.permute(1, 2, 0).numpy()
    return Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)


def from_pil(img: Image.Image) -> torch.Tensor:
    a = np.asarray(img)
    return torch.from_numpy(a.reshape(a.shape[0], a.shape[1], -1).copy()).permute(2, 0, 1)


def pil_batch(images: torch.Tensor, params: torch.Tensor, fn) -> torch.Tensor:
    return torch.stack([from_pil(fn(to_pil(x), float(p))) for x, p in zip(images, params, strict=True)])


def pil_fill(c: int, fill: int) -> int | tuple[int, ...]:
    return fill if c == 1 else (fill,) * 3


# ------------------------------------------------------------------------------------------------------------------
# Pixel ops against PIL

V = [0.0, 0.3, 0.5, 0.77, 1.0, 0.1, 0.9, 1.0]  # CTAugment blend amounts
FACTOR = [0.28, 1.72, 0.1, 2.0, 1.0, 0.0, 0.55, 1.33]  # RandAugment 0.1 + 0.18 l and CTAugment 0.1 + 1.9 v
PIXEL_CASES = {
    "identity": (V, lambda im, p: im),
    "autocontrast": (V, lambda im, p: Image.blend(im, ImageOps.autocontrast(im), p)),
    "equalize": (V, lambda im, p: Image.blend(im, ImageOps.equalize(im), p)),
    "invert": (V, lambda im, p: Image.blend(im, ImageOps.invert(im), p)),
    "blur": (V, lambda im, p: Image.blend(im, im.filter(ImageFilter.BLUR), p)),
    "smooth": (V, lambda im, p: Image.blend(im, im.filter(ImageFilter.SMOOTH), p)),
    "brightness": (FACTOR, lambda im, p: ImageEnhance.Brightness(im).enhance(p)),
    "color": (FACTOR, lambda im, p: ImageEnhance.Color(im).enhance(p)),
    "contrast": (FACTOR, lambda im, p: ImageEnhance.Contrast(im).enhance(p)),
    "sharpness": (FACTOR, lambda im, p: ImageEnhance.Sharpness(im).enhance(p)),
    "posterize": ([1, 2, 3, 4, 5, 6, 7, 8], lambda im, p: ImageOps.posterize(im, int(p))),
    "solarize": ([0, 1, 128, 200, 255, 256, 77, 26], lambda im, p: ImageOps.solarize(im, int(p))),
}


@pytest.mark.parametrize("name", sorted(PIXEL_CASES))
@pytest.mark.parametrize("c,side", SHAPES)
def test_pixel_op_equals_pil(name, c, side):
    values, reference = PIXEL_CASES[name]
    images = random_images(8, c, side, seed=side + c)
    params = torch.tensor(values, dtype=torch.float32)
    out = ops.OPS[name].fn(images, params)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    expected = pil_batch(images, params, reference)
    assert int((out.int() - expected.int()).abs().max()) == 0


def test_rgb_96_enhance_and_histogram_ops_equal_pil():
    images = random_images(4, 3, 96, seed=5)
    for name in ("autocontrast", "equalize", "color", "contrast", "sharpness", "blur"):
        values, reference = PIXEL_CASES[name]
        params = torch.tensor(values[:4], dtype=torch.float32)
        assert torch.equal(ops.OPS[name].fn(images, params), pil_batch(images, params, reference)), name


# ------------------------------------------------------------------------------------------------------------------
# Geometric ops against PIL (nearest, fill via fillcolor)

NEAREST = 0


def warp_one_op(images: torch.Tensor, name: str, params: torch.Tensor, fill: int, mode: int = NEAREST):
    h, w = images.shape[-2:]
    matrices = ops.OPS[name].fn(params, h, w)
    return geometry.warp(images, matrices, fill, torch.full((len(images),), mode))


GEOMETRIC_CASES = {
    # RandAugment: +-3l degrees, +-0.03l shear, +-l px; CTAugment: up to +-45 degrees, +-0.3 shear, +-0.3 px.
    "rotate": ([0, 30, -27, 45, -45, 90, 180, 270, 13, -3], lambda im, p, f: im.rotate(p, fillcolor=f)),
    "shear_x": (
        [0, 0.3, -0.3, 0.09, -0.27, 0.15, 0.03, -0.12, 0.21, -0.06],
        lambda im, p, f: im.transform(im.size, Image.AFFINE, (1, p, 0, 0, 1, 0), fillcolor=f),
    ),
    "shear_y": (
        [0, 0.3, -0.3, 0.09, -0.27, 0.15, 0.03, -0.12, 0.21, -0.06],
        lambda im, p, f: im.transform(im.size, Image.AFFINE, (1, 0, 0, p, 1, 0), fillcolor=f),
    ),
    "translate_x": (
        [0, 0.3, -0.3, 1, -3, 9, -9, 5, 0.29, -7],
        lambda im, p, f: im.transform(im.size, Image.AFFINE, (1, 0, p, 0, 1, 0), fillcolor=f),
    ),
    "translate_y": (
        [0, 0.3, -0.3, 1, -3, 9, -9, 5, 0.29, -7],
        lambda im, p, f: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, p), fillcolor=f),
    ),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC_CASES))
@pytest.mark.parametrize("c,side,fill", [(3, 32, 128), (1, 8, 0), (1, 96, 128)])
def test_nearest_warp_equals_pil(name, c, side, fill):
    values, reference = GEOMETRIC_CASES[name]
    images = random_images(len(values), c, side, seed=side)
    params = torch.tensor(values, dtype=torch.float32)
    out = warp_one_op(images, name, params, fill)
    expected = torch.stack(
        [from_pil(reference(to_pil(x), float(p), pil_fill(c, fill))) for x, p in zip(images, params, strict=True)]
    )
    identical = (out == expected).all(1).float().mean((1, 2))
    assert bool((identical == 1.0).all()), identical.tolist()


def test_rotate_sweep_equals_pil_exactly():
    """Every integer angle of CTAugment's range, where closed-form coordinates hit exact integers (e.g. 45 degrees)."""
    images = random_images(91, 3, 32, seed=1)
    degrees = torch.arange(-45, 46, dtype=torch.float32)
    out = warp_one_op(images, "rotate", degrees, fill=0)
    expected = pil_batch(images, degrees, lambda im, p: im.rotate(p, fillcolor=(0, 0, 0)))
    assert torch.equal(out, expected)


RESAMPLE = (Image.LANCZOS, Image.BICUBIC, Image.BILINEAR, Image.BOX, Image.HAMMING, Image.NEAREST)
RESCALE_MEAN_ABS = {0: 3.0, 1: 3.0, 2: 2.0, 3: 0.0, 4: 7.0, 5: 0.0}


@pytest.mark.parametrize("method", range(6))
@pytest.mark.parametrize("c,side", [(3, 32), (1, 8), (3, 96)])
def test_rescale_equals_pil_crop_resize(method, c, side):
    # CTAugment at 32 px crops 0..8 px per side (0.25 v size); PIL rounds the crop box.
    px = torch.tensor([0.0, 0.5, 1.0, 2.5, 3.0, 4.0, 6.0, 8.0]) * side / 32
    px = px.clamp(max=side / 2 - 1)
    images = smooth_images(len(px), c, side, seed=method)
    out = warp_one_op(images, "rescale", px, fill=0, mode=geometry.RESCALE_MODES[method])
    expected = pil_batch(
        images, px, lambda im, p: im.crop((p, p, side - p, side - p)).resize((side, side), RESAMPLE[method])
    )
    mean_abs = (out.float() - expected.float()).abs().mean((1, 2, 3))
    assert float(mean_abs.max()) <= RESCALE_MEAN_ABS[method], mean_abs.tolist()


def test_interpolating_warp_fills_exactly_the_uncovered_pixels():
    """Bilinear coverage is PIL's (sample point inside the image), not a blur of zero padding into the border."""
    images = torch.full((1, 3, 16, 16), 200, dtype=torch.uint8)
    matrices = geometry.rotate_matrix(torch.tensor([30.0]), 16, 16)
    out = geometry.warp(images, matrices, 0, torch.tensor([1]))
    expected = from_pil(to_pil(images[0]).rotate(30, resample=Image.BILINEAR, fillcolor=(0, 0, 0)))
    assert torch.equal(out[0] == 0, expected == 0)
    assert set(out.unique().tolist()) == {0, 200}


def test_composed_warp_applies_ops_in_order():
    """translate_x(3) then rotate(90): one warp with M_translate @ M_rotate equals PIL's two transforms in sequence."""
    images = random_images(1, 3, 32, seed=3)
    names = ["translate_x", "rotate"]
    ids = torch.tensor([[0, 1]])
    params = torch.tensor([[[3.0, 0, 0], [90.0, 0, 0]]])
    out = ops.apply_ops(images, names, ids, params, fill=128, cutout_fill=128)
    im = to_pil(images[0]).transform((32, 32), Image.AFFINE, (1, 0, 3, 0, 1, 0), fillcolor=(128,) * 3)
    assert torch.equal(out[0], from_pil(im.rotate(90, fillcolor=(128,) * 3)))


def test_ctaugment_translate_is_a_no_op():
    """docs/reference/augmentation.md#ctaugment quirk: +-0.3 px with nearest resampling moves nothing, in PIL and
    here."""
    images = random_images(4, 3, 32, seed=4)
    for name in ("translate_x", "translate_y"):
        out = warp_one_op(images, name, torch.tensor([0.3, -0.3, 0.1, -0.29]), fill=0)
        assert torch.equal(out, images)


# ------------------------------------------------------------------------------------------------------------------
# Cutout


def reference_cutout(img: np.ndarray, cy: int, cx: int, side: int, fill: int) -> np.ndarray:
    """``cutout_numpy`` of the references for even sides, [c - side // 2, c - side // 2 + side) in general."""
    out = img.copy()
    top, left = cy - side // 2, cx - side // 2
    out[:, max(0, top) : max(0, top + side), max(0, left) : max(0, left + side)] = fill
    return out


@pytest.mark.parametrize("c,side", SHAPES)
def test_cutout_equals_reference(c, side):
    g = torch.Generator().manual_seed(side)
    n = 12
    images = random_images(n, c, side, seed=side)
    cy = torch.randint(0, side, (n,), generator=g)
    cx = torch.randint(0, side, (n,), generator=g)
    cy[0], cx[0] = 0, side - 1  # clipped at two borders
    sides = torch.tensor([16, 16, 0, 2, 4, 5, 8, 1, side, 2 * side, 16, 3]).clamp(max=2 * side)
    for fill in (128, 127, 0):
        out = pixel.cutout(images, cy, cx, sides, fill)
        for i in range(n):
            ref = reference_cutout(images[i].numpy(), int(cy[i]), int(cx[i]), int(sides[i]), fill)
            assert np.array_equal(out[i].numpy(), ref)


# ------------------------------------------------------------------------------------------------------------------
# Identity parameters

IDENTITY_PARAMS = {
    "identity": [0.0],
    "autocontrast": [0.0],
    "equalize": [0.0],
    "invert": [0.0],
    "blur": [0.0],
    "smooth": [0.0],
    "brightness": [1.0],
    "color": [1.0],
    "contrast": [1.0],
    "sharpness": [1.0],
    "posterize": [8.0],
    "solarize": [256.0],
    "rotate": [0.0, 360.0, -360.0],
    "shear_x": [0.0],
    "shear_y": [0.0],
    "translate_x": [0.0],
    "translate_y": [0.0],
    "rescale": [0.0],
    "cutout": [0.0],
}


def test_identity_params_cover_every_op():
    assert set(IDENTITY_PARAMS) == set(ops.OPS)


@pytest.mark.parametrize("name", sorted(IDENTITY_PARAMS))
@pytest.mark.parametrize("c,side", [(3, 32), (1, 8), (3, 96)])
def test_identity_parameter_leaves_images_unchanged(name, c, side):
    images = random_images(4, c, side, seed=7)
    for value in IDENTITY_PARAMS[name]:
        params = torch.zeros(4, 1, 3)
        params[:, 0, 0] = value
        params[:, 0, 1:] = 3.0  # cutout centre / rescale method: irrelevant at the identity value
        out = ops.apply_ops(images, [name], torch.zeros(4, 1, dtype=torch.int64), params, fill=128, cutout_fill=127)
        assert torch.equal(out, images), (name, value)
        assert out.data_ptr() != images.data_ptr()


def test_identity_matrix_samples_skip_the_warp():
    images = random_images(6, 3, 32, seed=8)
    degrees = torch.tensor([0.0, 17.0, 0.0, -30.0, 360.0, 0.0])
    matrices = geometry.rotate_matrix(degrees, 32, 32)
    for mode in (0, 1, 2):
        out = geometry.warp(images, matrices, 128, torch.full((6,), mode))
        still = degrees % 360 == 0
        assert torch.equal(out[still], images[still])
        assert not torch.equal(out[1], images[1])


# ------------------------------------------------------------------------------------------------------------------
# Executor

ALL_OPS = sorted(ops.OPS)


def random_native_params(name: str, g: torch.Generator, side: int) -> list[float]:
    u = float(torch.rand((), generator=g))
    method = float(torch.randint(0, 6, (), generator=g))
    centre = [float(torch.randint(0, side, (), generator=g)) for _ in range(2)]
    return {
        "brightness": [0.1 + 1.9 * u, 0, 0],
        "color": [0.1 + 1.9 * u, 0, 0],
        "contrast": [0.1 + 1.9 * u, 0, 0],
        "sharpness": [0.1 + 1.9 * u, 0, 0],
        "posterize": [float(1 + int(7.999 * u)), 0, 0],
        "solarize": [float(int(256.999 * u)), 0, 0],
        "rotate": [round((2 * u - 1) * 45), 0, 0],
        "shear_x": [(2 * u - 1) * 0.3, 0, 0],
        "shear_y": [(2 * u - 1) * 0.3, 0, 0],
        "translate_x": [round((2 * u - 1) * 9), 0, 0],
        "translate_y": [(2 * u - 1) * 0.3 * side, 0, 0],
        "rescale": [0.25 * u * side, method, 0],
        "cutout": [float(2 * int(u * side / 4)), *centre],
    }.get(name, [u, 0, 0])


def random_program(n: int, depth: int, names: list[str], side: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(names), (n, depth), generator=g)
    params = torch.tensor(
        [[random_native_params(names[int(k)], g, side) for k in row] for row in ids], dtype=torch.float32
    )
    return ids, params


def pil_program(n: int, depth: int, names: list[str], side: int, seed: int):
    """Per sample: ``depth`` ops of ``names`` with parameters from the PIL cases above, at most one of them
    geometric (PIL resamples once per transform, the executor once per chain: equal only for a single warp), and a
    cutout in slot 0 or in the last slot. Returns (ids, params) in the layout of ``apply_ops``."""
    rng = np.random.default_rng(seed)
    pixel = [k for k in names if k in PIXEL_CASES]
    geometric = [k for k in names if k in GEOMETRIC_CASES]
    ids = np.zeros((n, depth + 1), np.int64)
    params = np.zeros((n, depth + 1, 3), np.float32)
    for i in range(n):
        cut = 0 if i % 2 else depth
        ops_slots = [d for d in range(depth + 1) if d != cut]
        geo = ops_slots[rng.integers(len(ops_slots))] if geometric and rng.random() < 0.7 else -1
        for d in ops_slots:
            cases = GEOMETRIC_CASES if d == geo else PIXEL_CASES
            name = rng.choice(geometric if d == geo else pixel)
            ids[i, d] = names.index(name)
            params[i, d, 0] = rng.choice(cases[name][0])
        ids[i, cut] = names.index("cutout")
        params[i, cut] = (2 * rng.integers(0, side // 2 + 1), rng.integers(0, side), rng.integers(0, side))
    return torch.from_numpy(ids), torch.from_numpy(params)


def pil_reference(image: torch.Tensor, names, ids_i, params_i, fill: int, cutout_fill: int) -> torch.Tensor:
    """The executor's documented order, one image at a time in PIL: pixel ops in slot order, then the warp, then
    cutout (numpy slicing)."""
    im, c = to_pil(image), image.shape[0]
    slots = [(names[int(k)], [float(v) for v in p]) for k, p in zip(ids_i, params_i, strict=True)]
    for name, p in slots:
        if name in PIXEL_CASES:
            im = PIXEL_CASES[name][1](im, p[0])
    for name, p in slots:
        if name in GEOMETRIC_CASES:
            im = GEOMETRIC_CASES[name][1](im, p[0], pil_fill(c, fill))
    out = from_pil(im).numpy()
    for name, p in slots:
        if name == "cutout":
            out = reference_cutout(out, int(p[1]), int(p[2]), int(p[0]), cutout_fill)
    return torch.from_numpy(out)


EXECUTOR_OPS = sorted({*PIXEL_CASES, *GEOMETRIC_CASES, "cutout"})


def run_path(host_path: bool, fn, *args, **kwargs):
    """``fn`` on the CPU path (grouped, host reads) or on the accelerator path (masked, no host reads)."""
    with contextlib.nullcontext() if host_path else host_reads.no_host_reads():
        return fn(*args, **kwargs)


@pytest.mark.parametrize("host_path", [True, False], ids=["grouped", "masked"])
@pytest.mark.parametrize("c,side,depth", [(3, 32, 3), (1, 8, 2), (3, 96, 2)])
def test_apply_ops_equals_pil_one_image_at_a_time(c, side, depth, host_path):
    n = 48 if side < 96 else 16
    images = random_images(n, c, side, seed=11)
    ids, params = pil_program(n, depth, EXECUTOR_OPS, side, seed=side)
    out = run_path(host_path, ops.apply_ops, images, EXECUTOR_OPS, ids, params, fill=0, cutout_fill=127)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for i in range(n):
        expected = pil_reference(images[i], EXECUTOR_OPS, ids[i], params[i], 0, 127)
        assert torch.equal(out[i], expected), (i, [EXECUTOR_OPS[k] for k in ids[i].tolist()], params[i].tolist())


@pytest.mark.parametrize("host_path", [True, False], ids=["grouped", "masked"])
def test_apply_ops_randaugment_names_and_grey_fills(host_path):
    ra = ["identity", "autocontrast", "equalize", "rotate", "solarize", "color", "contrast", "brightness"]
    ra += ["sharpness", "shear_x", "translate_x", "translate_y", "posterize", "shear_y", "cutout"]
    n = 40
    images = random_images(n, 3, 32, seed=12)
    ids, params = pil_program(n, 2, ra, 32, seed=12)
    params[ids == ra.index("cutout")] = torch.tensor([16.0, 5.0, 30.0])  # the same cutout square in every sample
    before = images.clone()
    out = run_path(host_path, ops.apply_ops, images, ra, ids, params, fill=128, cutout_fill=128)
    assert torch.equal(images, before)  # the input is not modified
    for i in range(n):
        assert torch.equal(out[i], pil_reference(images[i], ra, ids[i], params[i], 128, 128)), i
    assert bool((out[:, :, 0:13, 22:32] == 128).all())  # rows 5 - 8 .. 5 + 8, columns 30 - 8 .. 32 (clipped)


def test_apply_ops_empty_batch_and_depth():
    images = random_images(4, 3, 8, seed=0)
    out = ops.apply_ops(images, ["rotate"], torch.zeros(4, 0, dtype=torch.int64), torch.zeros(4, 0, 3), 0, 0)
    assert torch.equal(out, images)
    empty = ops.apply_ops(images[:0], ["rotate"], torch.zeros(0, 2, dtype=torch.int64), torch.zeros(0, 2, 3), 0, 0)
    assert empty.shape == (0, 3, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    n = 64
    images = random_images(n, 3, 32, seed=13)
    ids, params = random_program(n, 3, ALL_OPS, 32, seed=13)
    cpu = ops.apply_ops(images, ALL_OPS, ids, params, fill=0, cutout_fill=127)
    gpu = ops.apply_ops(images.cuda(), ALL_OPS, ids.cuda(), params.cuda(), fill=0, cutout_fill=127)
    assert gpu.device.type == "cuda"
    diff = (gpu.cpu().int() - cpu.int()).abs()
    # Nearest, LUT and integer ops agree exactly; float reductions and bicubic taps may differ by a grey level, and
    # the GPU cumsum of the scale engine may flip a boundary pixel.
    assert float((diff > 1).float().mean()) < 0.002
    assert float(diff.float().mean()) < 0.05


def test_op_table_lists_randaugment_and_ctaugment_ops():
    expected = {
        "identity", "autocontrast", "blur", "brightness", "color", "contrast", "cutout", "equalize", "invert",
        "posterize", "rescale", "rotate", "sharpness", "shear_x", "shear_y", "smooth", "solarize", "translate_x",
        "translate_y",
    }  # fmt: skip
    assert set(ops.OPS) == expected
    kinds = {name: spec.kind for name, spec in ops.OPS.items()}
    assert {n for n, k in kinds.items() if k == "geometric"} == {
        "rescale", "rotate", "shear_x", "shear_y", "translate_x", "translate_y",
    }  # fmt: skip
    assert kinds["cutout"] == "cutout"


# ------------------------------------------------------------------------------------------------------------------
# Validation


def call(images=None, names=("rotate", "posterize"), ids=None, params=None, fill=0, cutout_fill=127):
    images = random_images(4, 3, 8, seed=0) if images is None else images
    n = images.shape[0] if isinstance(images, torch.Tensor) and images.ndim == 4 else 4
    ids = torch.zeros(n, 2, dtype=torch.int64) if ids is None else ids
    params = torch.zeros(n, 2, 3) if params is None else params
    return ops.apply_ops(images, list(names), ids, params, fill=fill, cutout_fill=cutout_fill)


def with_param(op: int, j: int, value: float, names=("rotate", "posterize")) -> torch.Tensor:
    params = torch.zeros(4, 2, 3)
    params[:, :, 0] = 2.0  # valid for every op used below
    params[2, 1, j] = value
    ids = torch.full((4, 2), op, dtype=torch.int64)
    return call(names=names, ids=ids, params=params)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"names": ("rotate", "sepia")}, r"unknown augmentation op 'sepia'; valid ops: autocontrast, blur"),
        ({"images": torch.zeros(4, 3, 8, 8)}, r"uint8 image tensor \(N, C, H, W\), got torch.float32"),
        ({"images": torch.zeros(3, 8, 8, dtype=torch.uint8)}, r"uint8 image tensor \(N, C, H, W\)"),
        ({"images": torch.zeros(4, 2, 8, 8, dtype=torch.uint8)}, r"1 or 3 channels, got 2"),
        ({"ids": torch.zeros(4, 2, dtype=torch.int32)}, r"int64 tensor of shape \(N, D\) with N=4"),
        ({"ids": torch.zeros(5, 2, dtype=torch.int64)}, r"int64 tensor of shape \(N, D\) with N=4"),
        ({"ids": torch.full((4, 2), 2, dtype=torch.int64)}, r"must index the 2 op names \(0..1\)"),
        ({"params": torch.zeros(4, 2)}, r"shape \(N, D, 3\) = \(4, 2, 3\), got torch.float32 \(4, 2\)"),
        ({"params": torch.zeros(4, 3, 3)}, r"shape \(N, D, 3\) = \(4, 2, 3\)"),
        ({"params": torch.zeros(4, 2, 3, dtype=torch.int64)}, r"float tensor of shape \(N, D, 3\)"),
        ({"fill": 256}, r"fill must be an integer grey level in \[0, 255\], got 256"),
        ({"cutout_fill": 127.5}, r"cutout_fill must be an integer grey level in \[0, 255\]"),
    ],
)
def test_invalid_inputs_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        call(**kwargs)


@pytest.mark.parametrize(
    "names,op,j,value,match",
    [
        (("rotate", "posterize"), 1, 0, 9.0, r"'posterize' parameter bits must be an integer in \[1, 8\], got 9.0"),
        (("rotate", "posterize"), 1, 0, 0.0, r"bits must be an integer in \[1, 8\]"),
        (("rotate", "posterize"), 1, 0, 3.5, r"bits must be an integer in \[1, 8\], got 3.5 \(sample 2, slot 1\)"),
        (("rotate", "autocontrast"), 1, 0, 1.5, r"'autocontrast' parameter v must be a number in \[0, 1\]"),
        (("rotate", "invert"), 1, 0, -0.1, r"'invert' parameter v must be a number in \[0, 1\]"),
        (("rotate", "contrast"), 1, 0, -0.5, r"'contrast' parameter factor must be a number in \[0, inf\]"),
        (("rotate", "solarize"), 1, 0, 257.0, r"threshold must be a number in \[0, 256\]"),
        (("rotate", "posterize"), 0, 0, float("nan"), r"'rotate' parameter degrees must be a number"),
        (("rotate", "shear_x"), 1, 0, float("inf"), r"'shear_x' parameter shear must be a number"),
        (("rotate", "rescale"), 1, 0, 3.5, r"'rescale' parameter px_per_side must be a number in \[0, 3\]"),
        (("rotate", "rescale"), 1, 1, 6.0, r"'rescale' parameter method must be an integer in \[0, 5\]"),
        (("rotate", "cutout"), 1, 0, -2.0, r"'cutout' parameter side must be an integer in \[0, inf\]"),
        (("rotate", "cutout"), 1, 2, 1.5, r"'cutout' parameter cx must be an integer"),
    ],
)
def test_out_of_range_params_raise_config_error(names, op, j, value, match):
    with pytest.raises(ConfigError, match=match):
        with_param(op, j, value, names=names)


def test_apply_ops_checks_a_colour_fill():
    """cutout_fill may be one grey level per channel (TorchSSL / USB's (125, 123, 114))."""
    x = random_images(4, 3, 8, seed=0)
    ids, params = torch.zeros(4, 1, dtype=torch.int64), torch.tensor([[[4.0, 3.0, 3.0]]] * 4)
    for host_path in (True, False):
        out = run_path(host_path, ops.apply_ops, x, ["cutout"], ids, params, fill=0, cutout_fill=(1, 2, 3))
        expected = x.clone()
        expected[:, :, 1:5, 1:5] = torch.tensor([1, 2, 3], dtype=torch.uint8).view(1, 3, 1, 1)
        assert torch.equal(out, expected)
    for bad in ((1, 2), (1, 2, 256), (1.0, 2, 3), [1, 2, 3]):
        with pytest.raises(ConfigError, match=r"cutout_fill must be an integer grey level in \[0, 255\] or a tuple"):
            ops.apply_ops(x, ["cutout"], ids, params, fill=0, cutout_fill=bad)
    with pytest.raises(ConfigError, match=r"one per channel \(1\)"):
        ops.apply_ops(x[:, :1], ["cutout"], ids, params, fill=0, cutout_fill=(1, 2, 3))


def test_unused_params_are_not_checked():
    params = torch.zeros(4, 2, 3)
    params[:, :, 0] = 4.0
    params[:, :, 1:] = float("nan")  # rotate and posterize read p0 only
    out = call(ids=torch.tensor([[0, 1]] * 4), params=params)
    assert out.shape == (4, 3, 8, 8)


def test_non_contiguous_inputs():
    base = random_images(8, 3, 32, seed=14)
    ids, params = random_program(8, 2, ALL_OPS, 32, seed=14)
    expected = ops.apply_ops(base, ALL_OPS, ids, params, fill=0, cutout_fill=127)
    channels_last = base.contiguous(memory_format=torch.channels_last)
    assert torch.equal(ops.apply_ops(channels_last, ALL_OPS, ids, params, fill=0, cutout_fill=127), expected)
    wide = torch.cat([base, base], dim=3)[..., :32]  # strided rows
    assert torch.equal(ops.apply_ops(wide, ALL_OPS, ids, params, fill=0, cutout_fill=127), expected)


def test_warp_rejects_unknown_modes():
    images = random_images(2, 3, 8, seed=0)
    with pytest.raises(ConfigError, match=r"0 \(nearest\), 1 \(bilinear\) or 2 \(bicubic\), got \[0, 3\]"):
        geometry.warp(images, geometry.rotate_matrix(torch.tensor([10.0, 20.0]), 8, 8), 0, torch.tensor([0, 3]))
