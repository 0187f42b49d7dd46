"""Batched per-sample image ops of RandAugment and CTAugment on uint8 (N, C, H, W) tensors, matching PIL.

Source: reference-algorithms.md §2.1 (RandAugment as FixMatch used it) and §2.2 (CTAugment op table, fills, translate
quirk); semantics of Pillow's ImageOps / ImageEnhance / ImageFilter / Image.transform and its C core (Blend.c,
Convert.c, Filter.c, Geometry.c), which quantise to uint8 after every op, as we do.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ssl_bench.errors import ConfigError

NEAREST, BILINEAR, BICUBIC = 0, 1, 2
# CTAugment's rescale methods (ANTIALIAS/LANCZOS, BICUBIC, BILINEAR, BOX, HAMMING, NEAREST) as warp modes. An
# approximation: for the upscaling that rescale does, BOX is nearest neighbour, HAMMING (support 1) is close to
# bilinear and LANCZOS (support 3) to bicubic; PIL's bicubic uses a = -0.5 where grid_sample uses a = -0.75.
RESCALE_MODES = (BICUBIC, BICUBIC, BILINEAR, NEAREST, BILINEAR, NEAREST)


# ----------------------------------------------------------------------------------------------------------------
# Host reads
#
# On the CPU the ops read group sizes, index lists and shortcut conditions from their tensors: that is free there
# and lets each op run on just the samples that chose it. On an accelerator every such read would stall the host
# until the device has caught up, so there the ops read nothing: every op of a policy runs on the whole batch and
# per-sample masks pick the results (more arithmetic, no synchronisation). Both paths give the same pixels.

_NO_HOST_READS = contextvars.ContextVar("no_host_reads", default=False)


def host_reads(t: torch.Tensor) -> bool:
    """Whether the ops may read ``t``'s values on the host: only for CPU tensors, outside ``no_host_reads``."""
    return t.device.type == "cpu" and not _NO_HOST_READS.get()


@contextlib.contextmanager
def no_host_reads() -> Iterator[None]:
    """Run the accelerator paths (no host reads) on any device, e.g. to compare them with the CPU paths."""
    token = _NO_HOST_READS.set(True)
    try:
        yield
    finally:
        _NO_HOST_READS.reset(token)


def count_values(index: torch.Tensor, size: int) -> torch.Tensor:
    """How often each of 0..size-1 occurs in ``index`` (int64 (size,)): ``bincount`` on the CPU; elsewhere an
    index_add, because bincount reads the largest value on the host to size its output."""
    if host_reads(index):
        return torch.bincount(index, minlength=size)
    ones = torch.ones(index.shape, dtype=torch.int64, device=index.device)
    return torch.zeros(size, dtype=torch.int64, device=index.device).index_add_(0, index, ones)


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers


def _column(p: torch.Tensor) -> torch.Tensor:
    """Per-sample parameter (N,) as float32 (N, 1, 1, 1): PIL's C core takes blend factors as C floats."""
    return p.to(torch.float32).view(-1, 1, 1, 1)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """PIL's float -> uint8 store in Blend.c: clip to [0, 255], then truncate toward zero (in place on ``x``)."""
    # Through int16: the same truncation, and several times faster than a direct float -> uint8 cast on CPU.
    return x.clamp_(0, 255).to(torch.int16).to(torch.uint8)


def _blend(a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``Image.blend(a, b, alpha)``: a + alpha * (b - a) in float32, two roundings (no FMA), clipped and truncated.

    ``a`` and ``b`` hold uint8 values (as uint8 or exact float32; a float32 ``b`` is overwritten, callers pass
    temporaries). Every ImageEnhance op and CTAugment's blend(x, op(x), v) is one call, so the results equal PIL's
    bit for bit.
    """
    if host_reads(alpha) and bool((alpha == 1).all()):
        # PIL returns im2 for alpha 1 (RandAugment's autocontrast / equalize always do); the general formula below
        # gives the same pixels for alpha 1, so the accelerator path, which cannot read alpha, skips the check.
        return b if b.dtype == torch.uint8 else b.to(torch.int16).to(torch.uint8)
    a = a.to(torch.float32)
    out = b.to(torch.float32).sub_(a)
    out.mul_(_column(alpha)).add_(a)
    return _to_uint8(out)


def _flat_index(images: torch.Tensor) -> torch.Tensor:
    """(N * C * H * W,) index of every pixel into per-(sample, channel) 256-entry tables laid end to end.

    int32 (enough below 2**31 / 256 channels): index_select and bincount are faster with it than with int64.
    """
    n, c, h, w = images.shape
    flat = images.reshape(n * c, h * w).to(torch.int32)
    flat += torch.arange(0, n * c * 256, 256, device=images.device, dtype=torch.int32)[:, None]
    return flat.view(-1)


def _apply_lut(images: torch.Tensor, lut: torch.Tensor, flat_index: torch.Tensor | None = None) -> torch.Tensor:
    """Map every pixel through its own sample's and channel's uint8 table ``lut`` (N, C, 256)."""
    if flat_index is None:
        flat_index = _flat_index(images)
    return lut.reshape(-1).index_select(0, flat_index).view(images.shape)


def _luma(xf: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L (Convert.c ``L24``): (19595 R + 38470 G + 7471 B + 0x8000) >> 16, as float32 (N, 1, H, W).

    Every intermediate is an integer below 2**24 and 65536 a power of two, so float32 is exact here.
    """
    if xf.shape[1] == 1:
        return xf
    lum = xf[:, 0:1] * 19595 + xf[:, 1:2] * 38470
    lum.add_(xf[:, 2:3] * 7471).add_(32768).div_(65536)
    return lum.floor_()


def _box(xf: torch.Tensor, k: int) -> torch.Tensor:
    """Sum over every k x k window (valid positions only), separably with slices (faster than conv2d on CPU)."""
    h, w = xf.shape[-2:]
    rows = xf[..., :, 0 : w - k + 1] + xf[..., :, 1 : w - k + 2]
    for j in range(2, k):
        rows.add_(xf[..., :, j : w - k + 1 + j])
    out = rows[..., 0 : h - k + 1, :] + rows[..., 1 : h - k + 2, :]
    for i in range(2, k):
        out.add_(rows[..., i : h - k + 1 + i, :])
    return out


def _filter(xf: torch.Tensor, kind: Literal["blur", "smooth"]) -> torch.Tensor:
    """PIL's BLUR (5x5 ring of ones / 16) or SMOOTH (3x3 ones, centre 5, / 13) filter (Filter.c) of float32 images
    holding uint8 values; float32 out, for the blend that follows.

    Interior pixels get the kernel sum rounded half up; border pixels (2 for BLUR, 1 for SMOOTH) are kept as is. PIL
    sums in float32 with k / divisor weights; the integer kernel sum is exact in float32 and, for /16 and for /13
    (2 S + 13 is odd), never within float error of a rounding boundary, so this equals PIL exactly.
    """
    h, w = xf.shape[-2:]
    if kind == "smooth":
        m, divisor = 1, 13
        s = _box(xf, 3).add_(xf[..., 1 : h - 1, 1 : w - 1] * 4)
    else:
        m, divisor = 2, 16
        s = _box(xf, 5).sub_(_box(xf[..., 1 : h - 1, 1 : w - 1], 3))
    out = xf.clone()
    out[..., m : h - m, m : w - m] = s.add_(divisor / 2).div_(divisor).floor_()
    return out


# ----------------------------------------------------------------------------------------------------------------
# Pixel ops: f(images, p) -> images, p (N,) in the op's native unit


def identity(images: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
    """The images themselves (not a copy)."""
    return images


def autocontrast_lut(images: torch.Tensor) -> torch.Tensor:
    """``ImageOps.autocontrast`` (cutoff 0) per sample and channel: (N, C, 256) table from the channel's min / max.

    Built in float64 like PIL's Python loop (int(ix * scale + offset)), so every entry is PIL's.
    """
    lo = images.amin((2, 3)).double()[..., None]
    hi = images.amax((2, 3)).double()[..., None]
    ix = torch.arange(256, dtype=torch.float64, device=images.device)
    span = (hi - lo).clamp_min(1)
    # Not 255.0 / span: torch evaluates scalar / tensor as a reciprocal times 255, one rounding more than Python.
    scale = torch.full_like(span, 255.0).div_(span)
    offset = -lo * scale
    lut = ix * scale
    # int() truncates toward zero; negatives clip to 0 anyway, so the (faster) float -> int cast after the clip does.
    lut.add_(offset).clamp_(0, 255)
    return torch.where(hi > lo, lut, ix).to(torch.int16).to(torch.uint8)


def autocontrast(images: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """blend(x, ImageOps.autocontrast(x), v)."""
    return _blend(images, _apply_lut(images, autocontrast_lut(images)), v)


def equalize_lut(images: torch.Tensor, flat_index: torch.Tensor | None = None) -> torch.Tensor:
    """``ImageOps.equalize`` per sample and channel: (N, C, 256) table from a batched histogram (one count).

    step = (pixels - count of the largest value) // 255; lut[i] = (step // 2 + pixels below i) // step, clipped to
    255 as ``Image.point`` does; identity where the channel has one value or step is 0.
    """
    n, c, h, w = images.shape
    rows = n * c
    if flat_index is None:
        flat_index = _flat_index(images)
    hist = count_values(flat_index, rows * 256).view(rows, 256).double()
    # Integer floor divisions done as float64 division + floor (several times faster on CPU): every operand is an
    # integer below 2**24, so a non-integer quotient is at least 1 / divisor away from an integer and floor is exact.
    top = images.amax((2, 3)).view(rows, 1).long()
    step = (h * w - hist.gather(1, top)).div_(255).floor_()
    below = hist.cumsum(1).sub_(hist)
    lut = below.add_((step / 2).floor_()).div_(step.clamp_min(1)).floor_().clamp_(max=255)
    keep = ((hist > 0).sum(1, keepdim=True) <= 1) | (step == 0)
    lut = torch.where(keep, torch.arange(256, device=images.device, dtype=torch.float64), lut)
    return lut.to(torch.int16).to(torch.uint8).view(n, c, 256)


def equalize(images: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """blend(x, ImageOps.equalize(x), v)."""
    flat_index = _flat_index(images)
    return _blend(images, _apply_lut(images, equalize_lut(images, flat_index), flat_index), v)


def invert(images: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """blend(x, ImageOps.invert(x), v)."""
    return _blend(images, 255 - images, v)


def blur(images: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """blend(x, x.filter(ImageFilter.BLUR), v)."""
    xf = images.to(torch.float32)
    return _blend(xf, _filter(xf, "blur"), v)


def smooth(images: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """blend(x, x.filter(ImageFilter.SMOOTH), v)."""
    xf = images.to(torch.float32)
    return _blend(xf, _filter(xf, "smooth"), v)


def brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Brightness``: blend(black, x, factor) = factor * x."""
    out = images.to(torch.float32).mul_(_column(factor))
    return _to_uint8(out)


def color(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Color``: blend(L(x) as RGB, x, factor); a no-op on 1-channel images (their L is themselves)."""
    if images.shape[1] == 1:
        return images
    xf = images.to(torch.float32)
    lum = _luma(xf)
    xf.sub_(lum).mul_(_column(factor)).add_(lum)
    return _to_uint8(xf)


def contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Contrast``: blend(constant int(mean(L(x)) + 0.5), x, factor), the mean per sample."""
    n, _, h, w = images.shape
    xf = images.to(torch.float32)
    # Integer sums below 2**24 are exact in float32; the division is done in float64 like ImageStat's sum / count.
    total = _luma(xf).sum((1, 2, 3), dtype=torch.float32).double()
    mean = (total / (h * w) + 0.5).floor_().to(torch.float32).view(n, 1, 1, 1)
    xf.sub_(mean).mul_(_column(factor)).add_(mean)
    return _to_uint8(xf)


def sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Sharpness``: blend(x.filter(SMOOTH), x, factor)."""
    xf = images.to(torch.float32)
    return _blend(_filter(xf, "smooth"), xf, factor)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """``ImageOps.posterize``: keep the top ``bits`` (1..8) bits of every value."""
    shift = (8 - bits.long()).clamp_(0, 8)
    mask = (255 - ((1 << shift) - 1)).to(torch.uint8)
    return images & mask.view(-1, 1, 1, 1)


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``ImageOps.solarize``: invert pixels >= threshold (0..256; 256 leaves the image unchanged)."""
    # For integer pixels x >= t is x >= ceil(t); 255 - x is x ^ 255, so no where() is needed.
    above = images >= threshold.ceil().clamp(0, 256).to(torch.int16).view(-1, 1, 1, 1)
    return images ^ above.to(torch.uint8).mul_(255)


# ----------------------------------------------------------------------------------------------------------------
# Geometric ops: (N, 3, 3) float64 matrices in PIL's convention, output pixel coordinates -> input coordinates, pixel
# (x, y) covering [x, x + 1) x [y, y + 1). A chain op1, op2, ... samples the input at M1 @ M2 @ ... @ (x, y, 1).


def _affine(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, e: torch.Tensor, f: torch.Tensor):
    """Stack PIL's 6-tuple ``data`` (x_in = a x + b y + c, y_in = d x + e y + f) into (N, 3, 3) float64 matrices."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zero, zero, one], 1).view(-1, 3, 3)


def rotate_matrix(deg: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``Image.rotate(deg)``: counter-clockwise degrees about the image centre (w / 2, h / 2).

    Cos and sin are rounded to 15 decimals as PIL does, which makes multiples of 90 degrees exact permutations.
    """
    rad = -(deg.double() % 360.0) * (math.pi / 180.0)
    cos, sin = torch.cos(rad).round(decimals=15), torch.sin(rad).round(decimals=15)
    cx, cy = w / 2, h / 2
    return _affine(cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy)


def shear_x_matrix(c: torch.Tensor) -> torch.Tensor:
    """``img.transform(size, AFFINE, (1, c, 0, 0, 1, 0))``: shear about the top-left corner."""
    c = c.double()
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    return _affine(one, c, zero, zero, one, zero)


def shear_y_matrix(c: torch.Tensor) -> torch.Tensor:
    """``img.transform(size, AFFINE, (1, 0, 0, c, 1, 0))``."""
    c = c.double()
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    return _affine(one, zero, zero, c, one, zero)


def translate_x_matrix(px: torch.Tensor) -> torch.Tensor:
    """``img.transform(size, AFFINE, (1, 0, px, 0, 1, 0))``: positive px moves the content left."""
    px = px.double()
    zero, one = torch.zeros_like(px), torch.ones_like(px)
    return _affine(one, zero, px, zero, one, zero)


def translate_y_matrix(px: torch.Tensor) -> torch.Tensor:
    """``img.transform(size, AFFINE, (1, 0, 0, 0, 1, px))``: positive px moves the content up."""
    px = px.double()
    zero, one = torch.zeros_like(px), torch.ones_like(px)
    return _affine(one, zero, zero, zero, one, px)


def rescale_matrix(px_per_side: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """CTAugment rescale: ``x.crop(box).resize(size)``, i.e. a scale about the centre.

    ``Image.crop`` rounds the box (half to even, like torch.round), so the crop is (round(px), round(w - px)) on x.
    The same px applies to both axes (CTAugment crops a fraction of each side; the benchmark's images are square).
    """
    px = px_per_side.double()
    x0, x1 = px.round(), (w - px).round()
    y0, y1 = px.round(), (h - px).round()
    zero = torch.zeros_like(px)
    return _affine((x1 - x0) / w, zero, x0, zero, (y1 - y0) / h, y0)


def compose(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Matrix of ``first`` followed by ``second``: first @ second, written out elementwise so that the result does not
    depend on the batch size (a batched matmul kernel may sum in another order)."""
    return (
        first[:, :, 0:1] * second[:, 0:1, :]
        + first[:, :, 1:2] * second[:, 1:2, :]
        + first[:, :, 2:3] * second[:, 2:3, :]
    )


def _source_coords(matrices: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input coordinates (float32 (N, H, W) each) sampled at every output pixel centre (x + 0.5, y + 0.5).

    This is Geometry.c's ``affine_transform``, used by PIL's bilinear / bicubic transforms.
    """
    m = matrices.to(torch.float32)
    xs = torch.arange(w, dtype=torch.float32, device=m.device).add_(0.5).view(1, 1, w)
    ys = torch.arange(h, dtype=torch.float32, device=m.device).add_(0.5).view(1, h, 1)

    def row(r: int) -> torch.Tensor:
        out = m[:, r, 0].view(-1, 1, 1) * xs + m[:, r, 1].view(-1, 1, 1) * ys
        return out.add_(m[:, r, 2].view(-1, 1, 1))

    return row(0), row(1)


def _nearest_index(matrices: torch.Tensor, h: int, w: int, scale: bool) -> torch.Tensor:
    """Flat index (N, H * W) into the fill-padded (H + 2) x (W + 2) image of the pixel PIL's nearest transform reads.

    Geometry.c has two nearest engines. Pure scale / translate matrices (``scale``: b = d = 0) go to
    ImagingScaleAffine, which adds a (resp. e) in double from c + a / 2 per column (row); a CPU cumsum adds in the
    same sequence. Every other matrix goes to affine_fixed, in 16.16 fixed point: x_in = (A2 + x A0 + y A1) >> 16
    with every coefficient rounded to 1/65536 after adding the half-pixel terms to the offset; in integers the closed
    form equals PIL's accumulation. Either way the source pixel matches PIL's exactly, except for matrices that reach
    beyond +-32768 px (never produced by the policies), where PIL falls back to doubles and we stay in fixed point.
    A coordinate outside the image is clamped onto the one-pixel fill border, which is how exposed pixels get the fill.
    """
    n = matrices.shape[0]
    m = matrices.to(torch.float64)
    a, b, c, d, e, f = (m[:, i // 3, i % 3] for i in range(6))
    if scale:

        def accumulate(start: torch.Tensor, step: torch.Tensor, size: int) -> torch.Tensor:
            out = step[:, None].repeat(1, size)
            out[:, 0] = start
            # + 1: the fill border; anything below 0 or beyond the image lands on it.
            return out.cumsum_(1).floor_().clamp_(-1, size).add_(1).long()

        cols = accumulate(c + a * 0.5, a, w)
        rows = accumulate(f + e * 0.5, e, h).mul_(w + 2)
        return (rows[:, :, None] + cols[:, None, :]).view(n, h * w)

    # int32 holds every 16.16 coordinate within +-32768 px; beyond, int64 avoids overflow.
    reach = (c.abs() + a.abs() * (w + 1) + b.abs() * (h + 1)).maximum(f.abs() + d.abs() * (w + 1) + e.abs() * (h + 1))
    dtype = torch.int32 if host_reads(reach) and float(reach.max()) < 30000 else torch.int64

    def fix(v: torch.Tensor) -> torch.Tensor:
        return (v * 65536.0 + 0.5).floor_().to(dtype).view(n, 1, 1)

    xs = torch.arange(w, device=m.device, dtype=dtype).view(1, 1, w)
    ys = torch.arange(h, device=m.device, dtype=dtype).view(1, h, 1)
    one = 65536  # the fill border, added in fixed point
    cols = ((fix(c + a * 0.5 + b * 0.5) + one + xs * fix(a)) + ys * fix(b)).bitwise_right_shift_(16).clamp_(0, w + 1)
    rows = ((fix(f + d * 0.5 + e * 0.5) + one + xs * fix(d)) + ys * fix(e)).bitwise_right_shift_(16).clamp_(0, h + 1)
    return cols.add_(rows, alpha=w + 2).view(n, h * w).long()


def _as_words(rows: torch.Tensor) -> torch.Tensor:
    """A contiguous uint8 (N, ...) tensor viewed as (N, words) of the widest integer type that divides a row."""
    flat = rows.view(rows.shape[0], -1)
    for dtype, size in ((torch.int64, 8), (torch.int32, 4), (torch.int16, 2)):
        if flat.shape[1] % size == 0:
            return flat.view(dtype)
    return flat


def _replace_rows(base: torch.Tensor, groups: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """A copy of ``base`` with rows ``sel`` replaced by ``values`` for every (sel, values) group.

    index_copy_ on 8-byte words: on uint8 elements it is ten times slower on CPU.
    """
    out = base.clone(memory_format=torch.contiguous_format)
    words = _as_words(out)
    for sel, values in groups:
        words.index_copy_(0, sel, _as_words(values.contiguous()))
    return out


def _warp_nearest(images: torch.Tensor, matrices: torch.Tensor, fill: int, scale: bool) -> torch.Tensor:
    n, c, h, w = images.shape
    padded = F.pad(images, (1, 1, 1, 1), value=fill).view(n, c, (h + 2) * (w + 2))
    idx = _nearest_index(matrices, h, w, scale)
    return torch.gather(padded, 2, idx[:, None].expand(n, c, h * w)).view(n, c, h, w)


def _warp_interpolate(images: torch.Tensor, matrices: torch.Tensor, fill: int, mode: int) -> torch.Tensor:
    n, c, h, w = images.shape
    xin, yin = _source_coords(matrices, h, w)
    # PIL's bilinear / bicubic transforms write a pixel iff its sample point lies inside [0, W) x [0, H), and clamp
    # the interpolation taps to the edge (Geometry.c): coverage from the coordinates, border padding for the taps.
    inside = ((xin >= 0) & (xin < w) & (yin >= 0) & (yin < h))[:, None]
    grid = torch.stack([xin.mul_(2 / w).sub_(1), yin.mul_(2 / h).sub_(1)], -1)
    name = "bilinear" if mode == BILINEAR else "bicubic"
    res = F.grid_sample(images.to(torch.float32), grid, mode=name, padding_mode="border", align_corners=False)
    keep = inside.to(torch.uint8)
    out = res.add_(0.5).clamp_(0, 255).to(torch.int16).to(torch.uint8).mul_(keep)
    return out.add_((1 - keep).mul_(fill)) if fill else out


@functools.lru_cache(maxsize=8)
def _rescale_modes(device: torch.device) -> torch.Tensor:
    """``RESCALE_MODES`` on ``device``, copied there once (a copy per call would wait for the device)."""
    return torch.tensor(RESCALE_MODES, device=device)


def warp(
    images: torch.Tensor, matrices: torch.Tensor, fill: int, modes: torch.Tensor, interpolated: bool = True
) -> torch.Tensor:
    """Resample every image at ``matrices`` (N, 3, 3) with modes (N,) 0 = nearest, 1 = bilinear, 2 = bicubic.

    Exposed pixels get ``fill`` (128 grey for RandAugment, 0 black for CTAugment). Samples whose matrix is exactly the
    identity are skipped and come out bit-identical; the others are grouped by mode (and, for nearest, by which of
    PIL's two engines applies). On the CPU each group goes through one gather or grid_sample per chunk of its own
    samples; without host reads (``host_reads``) every possible group runs on the whole batch and a mask picks each
    sample's result (``interpolated = False`` promises that every mode is nearest, which halves that work).
    Returns a new tensor.
    """
    n, _, h, w = images.shape
    eye = torch.eye(3, dtype=matrices.dtype, device=matrices.device)
    moved = ~(matrices == eye).all(2).all(1)
    modes = modes.to(moved.device)
    host = host_reads(modes)
    if host and bool(((modes < NEAREST) | (modes > BICUBIC)).any()):
        raise ConfigError(f"warp modes must be 0 (nearest), 1 (bilinear) or 2 (bicubic), got {modes.unique().tolist()}")
    # Group 0: nearest through affine_fixed, 1: nearest through ImagingScaleAffine, 2 / 3: bilinear / bicubic.
    scale = (matrices[:, 0, 1] == 0) & (matrices[:, 1, 0] == 0)
    group = torch.where(modes == NEAREST, scale.long(), modes + 1)

    def resample(sub: torch.Tensor, mats: torch.Tensor, g: int) -> torch.Tensor:
        if g < 2:
            return _warp_nearest(sub, mats, fill, scale=g == 1)
        return _warp_interpolate(sub, mats, fill, g - 1)

    if not host:
        out = images
        for g in range(4 if interpolated else 2):
            chose = (moved & (group == g)).view(n, 1, 1, 1)
            out = torch.where(chose, resample(images, matrices, g), out)
        return images.clone() if out is images else out
    # Chunks of ~128k output pixels keep the index temporaries (~25 bytes a pixel) at a few MB: larger ones are fresh
    # mmaps that page-fault on every call, which costs more than the warp itself on CPU.
    chunk = max(1, (1 << 17) // (h * w))
    groups = []
    for g, count in enumerate(torch.bincount(group[moved], minlength=4).tolist()):
        if count:
            sel = (moved & (group == g)).nonzero().squeeze(1)
            for part in sel.split(chunk):
                groups.append((part, resample(images.index_select(0, part), matrices[part], g)))
    return _replace_rows(images, groups)


# ----------------------------------------------------------------------------------------------------------------
# Cutout


def cutout(images: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, side: torch.Tensor, fill: int) -> torch.Tensor:
    """Set a side x side square to ``fill``: rows [cy - side // 2, cy - side // 2 + side), likewise columns, clipped.

    For the even sides the references produce this is their [c - side / 2, c + side / 2) (``cutout_numpy``).
    Returns a new tensor.
    """
    n, _, h, w = images.shape
    side = side.long()
    top = cy.long() - side // 2
    left = cx.long() - side // 2
    rows = torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device)
    in_rows = ((rows >= top[:, None]) & (rows < (top + side)[:, None])).to(torch.uint8).view(n, 1, h, 1)
    in_cols = ((cols >= left[:, None]) & (cols < (left + side)[:, None])).to(torch.uint8).view(n, 1, 1, w)
    square = in_rows * in_cols
    # uint8 arithmetic: several times faster than masked_fill / where with a broadcast bool mask on CPU.
    out = images * (1 - square)
    return out.add_(square.mul_(fill)) if fill else out


# ----------------------------------------------------------------------------------------------------------------
# Op table


@dataclass(frozen=True)
class Param:
    """Valid range of one native parameter (p0, p1, p2 of ``apply_ops``)."""

    name: str
    low: float = -math.inf
    high: float = math.inf
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class OpSpec:
    """``kind`` says how ``apply_ops`` runs ``fn``: pixel fn(images, p0); geometric fn(p0, h, w) -> (N, 3, 3);
    cutout fn(images, cy, cx, side, fill)."""

    kind: Literal["pixel", "geometric", "cutout"]
    fn: Callable[..., torch.Tensor]
    params: tuple[Param, ...] = ()


_BLEND = (Param("v", 0.0, 1.0),)
_FACTOR = (Param("factor", 0.0),)

OPS: dict[str, OpSpec] = {
    "identity": OpSpec("pixel", identity),
    "autocontrast": OpSpec("pixel", autocontrast, _BLEND),
    "blur": OpSpec("pixel", blur, _BLEND),
    "brightness": OpSpec("pixel", brightness, _FACTOR),
    "color": OpSpec("pixel", color, _FACTOR),
    "contrast": OpSpec("pixel", contrast, _FACTOR),
    "cutout": OpSpec(
        "cutout", cutout, (Param("side", 0.0, integer=True), Param("cy", integer=True), Param("cx", integer=True))
    ),
    "equalize": OpSpec("pixel", equalize, _BLEND),
    "invert": OpSpec("pixel", invert, _BLEND),
    "posterize": OpSpec("pixel", posterize, (Param("bits", 1.0, 8.0, integer=True),)),
    "rescale": OpSpec(
        "geometric", rescale_matrix, (Param("px_per_side", 0.0), Param("method", 0.0, 5.0, integer=True))
    ),
    "rotate": OpSpec("geometric", rotate_matrix, (Param("degrees"),)),
    "sharpness": OpSpec("pixel", sharpness, _FACTOR),
    "shear_x": OpSpec("geometric", lambda c, h, w: shear_x_matrix(c), (Param("shear"),)),
    "shear_y": OpSpec("geometric", lambda c, h, w: shear_y_matrix(c), (Param("shear"),)),
    "smooth": OpSpec("pixel", smooth, _BLEND),
    "solarize": OpSpec("pixel", solarize, (Param("threshold", 0.0, 256.0),)),
    "translate_x": OpSpec("geometric", lambda px, h, w: translate_x_matrix(px), (Param("px"),)),
    "translate_y": OpSpec("geometric", lambda px, h, w: translate_y_matrix(px), (Param("px"),)),
}


# ----------------------------------------------------------------------------------------------------------------
# Validation and executor


def check_images(images: torch.Tensor) -> None:
    """Every policy and op takes a uint8 batch (N, C, H, W) with 1 or 3 channels."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"augmentation expects a uint8 image tensor (N, C, H, W), got {got}")
    if images.shape[1] not in (1, 3):
        raise ConfigError(f"augmentation expects 1 or 3 channels, got {images.shape[1]}")


@functools.lru_cache(maxsize=64)
def _bounds(names: tuple[str, ...], h: int, w: int) -> tuple[list[list[Param | None]], torch.Tensor]:
    """Per op name, its three parameters (None where unused) and a (K, 4, 3) float64 table low / high / used / int."""
    table: list[list[Param | None]] = [[*OPS[name].params, None, None, None][:3] for name in names]
    for row, name in zip(table, names, strict=True):
        if name == "rescale":
            # The crop must keep at least two pixels per axis.
            row[0] = Param("px_per_side", 0.0, min(h, w) / 2 - 1)
    values = [
        [
            [-math.inf if q is None else q.low for q in row],
            [math.inf if q is None else q.high for q in row],
            [q is not None for q in row],
            [q is not None and q.integer for q in row],
        ]
        for row in table
    ]
    return table, torch.tensor(values, dtype=torch.float64)


def validate(
    images: torch.Tensor,
    names: Sequence[str],
    ids: torch.Tensor,
    params: torch.Tensor,
    fill: int = 0,
    cutout_fill: int = 0,
) -> list[OpSpec]:
    """Check the inputs of ``apply_ops`` and return the op specs of ``names``; raise ConfigError on any mistake."""
    check_images(images)
    for what, value in (("fill", fill), ("cutout_fill", cutout_fill)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise ConfigError(f"{what} must be an integer grey level in [0, 255], got {value!r}")
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise ConfigError(f"unknown augmentation op {unknown[0]!r}; valid ops: {', '.join(sorted(OPS))}")
    n, _, h, w = images.shape
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64 or ids.ndim != 2 or ids.shape[0] != n:
        got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ConfigError(f"op ids must be an int64 tensor of shape (N, D) with N={n}, got {got}")
    depth = ids.shape[1]
    if not isinstance(params, torch.Tensor) or not params.is_floating_point() or tuple(params.shape) != (n, depth, 3):
        got = f"{params.dtype} {tuple(params.shape)}" if isinstance(params, torch.Tensor) else type(params).__name__
        raise ConfigError(f"op params must be a float tensor of shape (N, D, 3) = ({n}, {depth}, 3), got {got}")
    specs = [OPS[name] for name in names]
    if n * depth == 0:
        return specs
    if bool(((ids < 0) | (ids >= len(names))).any()):
        raise ConfigError(
            f"op ids must index the {len(names)} op names (0..{len(names) - 1}), got values in "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )

    # One vectorised range check: the bounds of every (sample, slot, parameter) gathered from the op table.
    table, bounds = _bounds(tuple(names), h, w)
    low, high, used, integer = bounds.to(params.device)[ids].unbind(2)
    p = params.to(torch.float64)
    ok = torch.isfinite(p) & (p >= low) & (p <= high) & ((integer == 0) | (p == p.floor()))
    bad = (used != 0) & ~ok
    if bool(bad.any()):
        i, d, j = (int(v) for v in bad.nonzero()[0])
        op = int(ids[i, d])
        spec = table[op][j]
        assert spec is not None
        raise ConfigError(
            f"op {names[op]!r} parameter {spec.name} must be {spec.describe()}, got {float(params[i, d, j])} "
            f"(sample {i}, slot {d})"
        )
    return specs


def _is_pixel(spec: OpSpec) -> bool:
    return spec.kind == "pixel" and spec.fn is not identity


def _pixel_ops_grouped(
    images: torch.Tensor, ids: torch.Tensor, params: torch.Tensor, specs: list[OpSpec], present: list[list[int]]
) -> torch.Tensor:
    """The pixel ops of every slot on the CPU: sort the batch by the slot's op id so every op's samples form one
    contiguous slice (no per-group gather / scatter); ``rows[j]`` is the sample held in row j of ``out``."""
    out, rows = images, None
    for d, counts in enumerate(present):
        if not any(count and _is_pixel(specs[op]) for op, count in enumerate(counts)):
            continue
        order = torch.argsort(ids[:, d], stable=True)
        if rows is None:
            out, rows = images.index_select(0, order), order
        else:
            out, rows = out.index_select(0, torch.argsort(rows).index_select(0, order)), order
        slot_params = params[:, d, 0].index_select(0, order)
        start = 0
        for op, count in enumerate(counts):
            if count and _is_pixel(specs[op]):
                stop = start + count
                out[start:stop] = specs[op].fn(out[start:stop], slot_params[start:stop])
            start += count
    return out if rows is None else out.index_select(0, torch.argsort(rows))


def _pixel_ops_masked(images: torch.Tensor, ids: torch.Tensor, params: torch.Tensor, specs: list[OpSpec]):
    """The pixel ops of every slot without host reads: each op on the whole batch, a mask picking its samples."""
    out = images
    for d in range(ids.shape[1]):
        for op, spec in enumerate(specs):
            if _is_pixel(spec):
                out = torch.where((ids[:, d] == op).view(-1, 1, 1, 1), spec.fn(out, params[:, d, 0]), out)
    return out


def apply_ops(
    images: torch.Tensor,
    names: Sequence[str],
    ids: torch.Tensor,
    params: torch.Tensor,
    fill: int,
    cutout_fill: int,
    check: bool = True,
) -> torch.Tensor:
    """Apply sample i's ops ``names[ids[i, d]]`` with native parameters ``params[i, d]`` (p0, p1, p2), d = 0..D-1.

    Pixel ops run in slot order, each slot grouping the samples that chose the same op (on the CPU; elsewhere masks
    select them, ``host_reads``). The geometric ops of all slots
    are composed into one matrix per sample and applied in a single warp after the pixel ops; the reference
    interleaves them, so this is a deviation: here the fill region never enters the autocontrast / equalize /
    contrast statistics, and a chain is resampled once instead of once per op. A sample with a rescale slot warps
    with that rescale's method (the last one if several), every other sample with nearest. Cutout runs last, with
    ``cutout_fill``; exposed warp pixels get ``fill``. Identity-matrix samples skip the warp. Returns a new tensor.
    ``check=False`` skips ``validate`` (its range checks read the device from the host): for the policies, whose
    parameters are in range by construction.
    """
    specs = validate(images, names, ids, params, fill, cutout_fill) if check else [OPS[name] for name in names]
    n, _, h, w = images.shape
    depth = ids.shape[1]
    if n * depth == 0:
        return images.clone()
    dev = images.device
    ids = ids.to(dev)
    params = params.to(device=dev, dtype=torch.float32)
    k = len(names)
    host = host_reads(ids)
    if host:
        slot_base = torch.arange(0, depth * k, k, device=dev)
        present = torch.bincount((ids + slot_base).view(-1), minlength=depth * k).view(depth, k).tolist()
    else:  # nothing is read on the host: every op of ``names`` may occur in every slot
        present = [[1] * k for _ in range(depth)]

    out = (
        _pixel_ops_grouped(images, ids, params, specs, present)
        if host
        else _pixel_ops_masked(images, ids, params, specs)
    )

    geometric = [op for op in range(k) if specs[op].kind == "geometric" and any(row[op] for row in present)]
    if geometric:
        # Every slot's matrix at once: (N * D, 3, 3), the identity where the slot holds no geometric op.
        flat_ids, flat_p = ids.reshape(-1), params[..., 0].reshape(-1)
        slots = torch.eye(3, dtype=torch.float64, device=dev).expand(n * depth, 3, 3)
        modes = torch.full((n,), NEAREST, dtype=torch.int64, device=dev)
        for op in geometric:
            chose = flat_ids == op
            slots = torch.where(chose[:, None, None], specs[op].fn(flat_p, h, w), slots)
            if names[op] == "rescale":
                method = params[..., 1].nan_to_num().clamp(0, 5).long()
                chose_mode = _rescale_modes(dev)[method]
                for d in range(depth):
                    modes = torch.where(ids[:, d] == op, chose_mode[:, d], modes)
        slots = slots.view(n, depth, 3, 3)
        matrices = slots[:, 0]
        for d in range(1, depth):
            matrices = compose(matrices, slots[:, d])
        out = warp(out, matrices, fill, modes, interpolated="rescale" in [names[op] for op in geometric])

    for d in range(depth):
        for op, count in enumerate(present[d]):
            if count and specs[op].kind == "cutout":
                # Every sample goes through; side 0 (and centre 0) for those that chose another op.
                p = torch.where((ids[:, d] == op)[:, None], params[:, d], 0)
                out = specs[op].fn(out, p[:, 1], p[:, 2], p[:, 0], cutout_fill)
    return images.clone() if out is images else out
