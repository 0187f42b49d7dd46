"""The op table of RandAugment and CTAugment and its executor: per-sample ops on uint8 (N, C, H, W) tensors,
matching PIL (the ops themselves are in ``pixel`` and ``geometry``).

Source: docs/reference/augmentation.md#randaugment-fixmatch (RandAugment as FixMatch used it) and
docs/reference/augmentation.md#ctaugment (CTAugment op table, fills, translate quirk); semantics of Pillow's ImageOps /
ImageEnhance / ImageFilter / Image.transform and its C core (Blend.c, Convert.c, Filter.c, Geometry.c), which quantise
to uint8 after every op, as we do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ssl_bench.augment.geometry import (
    NEAREST,
    compose,
    rescale_matrix,
    rescale_modes,
    rotate_matrix,
    shear_x_matrix,
    shear_y_matrix,
    translate_x_matrix,
    translate_y_matrix,
    warp,
)
from ssl_bench.augment.host_reads import host_reads
from ssl_bench.augment.pixel import (
    autocontrast,
    blur,
    brightness,
    color,
    contrast,
    cutout,
    equalize,
    identity,
    invert,
    posterize,
    sharpness,
    smooth,
    solarize,
)
from ssl_bench.errors import ConfigError

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


def _grey(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def validate(
    images: torch.Tensor,
    names: Sequence[str],
    ids: torch.Tensor,
    params: torch.Tensor,
    fill: int = 0,
    cutout_fill: int | tuple[int, ...] = 0,
) -> list[OpSpec]:
    """Check the inputs of ``apply_ops`` and return the op specs of ``names``; raise ConfigError on any mistake."""
    check_images(images)
    if not _grey(fill):
        raise ConfigError(f"fill must be an integer grey level in [0, 255], got {fill!r}")
    colour = isinstance(cutout_fill, tuple) and len(cutout_fill) == images.shape[1] and all(map(_grey, cutout_fill))
    if not (_grey(cutout_fill) or colour):
        raise ConfigError(
            f"cutout_fill must be an integer grey level in [0, 255] or a tuple of one per channel "
            f"({images.shape[1]}), got {cutout_fill!r}"
        )
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
    cutout_fill: int | tuple[int, ...],
    check: bool = True,
) -> torch.Tensor:
    """Apply sample i's ops ``names[ids[i, d]]`` with native parameters ``params[i, d]`` (p0, p1, p2), d = 0..D-1.

    Pixel ops run in slot order, each slot grouping the samples that chose the same op (on the CPU; elsewhere masks
    select them, ``host_reads``). The geometric ops of all slots
    are composed into one matrix per sample and applied in a single warp after the pixel ops; the reference
    interleaves them, so this is a deviation: here the fill region never enters the autocontrast / equalize /
    contrast statistics, and a chain is resampled once instead of once per op. A sample with a rescale slot warps
    with that rescale's method (the last one if several), every other sample with nearest. Cutout runs last, with
    ``cutout_fill`` (a grey level, or a tuple of one level per channel); exposed warp pixels get ``fill``.
    Identity-matrix samples skip the warp. Returns a new tensor.
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
                chose_mode = rescale_modes(dev)[method]
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
