"""The pixel ops of RandAugment and CTAugment, f(images, p) on uint8 (N, C, H, W) batches with one parameter per
sample, and cutout; each equals its PIL counterpart bit for bit.

Source: docs/reference/augmentation.md#randaugment-fixmatch (RandAugment as FixMatch used it) and
docs/reference/augmentation.md#ctaugment (CTAugment op table, fills, translate quirk); semantics of Pillow's ImageOps /
ImageEnhance / ImageFilter and their C core (Blend.c, Convert.c, Filter.c), which quantise to uint8 after every op, as
we do.
"""

from __future__ import annotations

from typing import Literal

import torch

from ssl_bench.augment.host_reads import count_values, host_reads

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
# Cutout


def cutout(
    images: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, side: torch.Tensor, fill: int | tuple[int, ...]
) -> torch.Tensor:
    """Set a side x side square to ``fill``: rows [cy - side // 2, cy - side // 2 + side), likewise columns, clipped.

    For the even sides the references produce this is their [c - side / 2, c + side / 2) (``cutout_numpy``).
    ``fill`` is one grey level for every channel, or a tuple with one level per channel (TorchSSL / USB fill
    (125, 123, 114)). Returns a new tensor.
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
    if isinstance(fill, tuple):
        # filled channel by channel on the device: a tensor built from the tuple would be a host-to-device copy
        colour = torch.empty((1, len(fill), 1, 1), dtype=torch.uint8, device=images.device)
        for k, level in enumerate(fill):
            colour[:, k].fill_(level)
        return out.add_(square * colour)
    return out.add_(square.mul_(fill)) if fill else out
