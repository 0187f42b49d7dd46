"""The geometric ops of RandAugment and CTAugment as (N, 3, 3) matrices, and the one warp that resamples a batch at
its composed matrices the way PIL's nearest, bilinear and bicubic transforms do.

Source: docs/reference/augmentation.md#randaugment-fixmatch and docs/reference/augmentation.md#ctaugment (op table,
fills, translate quirk); Pillow's Image.transform and its C core (Geometry.c).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ssl_bench.augment.host_reads import host_reads
from ssl_bench.errors import ConfigError

NEAREST, BILINEAR, BICUBIC = 0, 1, 2
# CTAugment's rescale methods (ANTIALIAS/LANCZOS, BICUBIC, BILINEAR, BOX, HAMMING, NEAREST) as warp modes. An
# approximation: for the upscaling that rescale does, BOX is nearest neighbour, HAMMING (support 1) is close to
# bilinear and LANCZOS (support 3) to bicubic; PIL's bicubic uses a = -0.5 where grid_sample uses a = -0.75.
RESCALE_MODES = (BICUBIC, BICUBIC, BILINEAR, NEAREST, BILINEAR, NEAREST)


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
def rescale_modes(device: torch.device) -> torch.Tensor:
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
