"""Per-image PIL pipelines doing the work of the batched policies: the baseline of ``ssl-bench bench augment``.

They follow docs/reference/common.md#weak-augmentation (weak), docs/reference/augmentation.md#randaugment-fixmatch
(RandAugment) and docs/reference/augmentation.md#ctaugment (CTAugment), and docs/reference/common.md#torchssl-and-usb
(TorchSSL / USB RandAugment), one image at a time with PIL and torchvision's PIL transforms, the way per-image
data-loader pipelines do it.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torchvision.transforms as T
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from PIL.Image import Resampling, Transform

from ssl_bench.augment.strong import CTA_OPS, RA_OPS
from ssl_bench.augment.usb import USB_CUTOUT_FILL, USB_CUTOUT_GREY, USB_N_OPS, USB_OPS, USB_RANGES


def _enhance(kind, img: Image.Image, factor: float) -> Image.Image:
    return kind(img).enhance(factor)


def _affine(img: Image.Image, data: tuple, fill: int) -> Image.Image:
    return img.transform(
        img.size, Transform.AFFINE, data, resample=Resampling.NEAREST, fillcolor=(fill,) * len(img.getbands())
    )


def _cutout(img: Image.Image, side: int, cy: int, cx: int, fill: int) -> Image.Image:
    if side <= 0:
        return img
    arr = np.array(img)
    h, w = arr.shape[:2]
    half = side // 2
    arr[max(0, cy - half) : min(h, cy + half), max(0, cx - half) : min(w, cx + half)] = fill
    return Image.fromarray(arr)


def pil_op(img: Image.Image, name: str, p: float, fill: int, p1: float = 0.0) -> Image.Image:
    """One op on one PIL image with its native parameter ``p`` (the units of ``ssl_bench.augment.ops``)."""
    if name == "identity":
        return img
    if name in ("autocontrast", "equalize", "invert"):
        return Image.blend(img, getattr(ImageOps, name)(img), p)
    if name in ("blur", "smooth"):
        return Image.blend(img, img.filter(ImageFilter.BLUR if name == "blur" else ImageFilter.SMOOTH), p)
    if name in ("brightness", "color", "contrast", "sharpness"):
        return _enhance(getattr(ImageEnhance, name.capitalize()), img, p)
    if name == "posterize":
        return ImageOps.posterize(img, int(p))
    if name == "solarize":
        return ImageOps.solarize(img, int(p))
    if name == "rotate":
        return img.rotate(p, resample=Resampling.NEAREST, fillcolor=(fill,) * len(img.getbands()))
    if name == "shear_x":
        return _affine(img, (1, p, 0, 0, 1, 0), fill)
    if name == "shear_y":
        return _affine(img, (1, 0, 0, p, 1, 0), fill)
    if name == "translate_x":
        return _affine(img, (1, 0, p, 0, 1, 0), fill)
    if name == "translate_y":
        return _affine(img, (1, 0, 0, 0, 1, p), fill)
    if name == "rescale":
        w, h = img.size
        methods = (
            Resampling.LANCZOS,
            Resampling.BICUBIC,
            Resampling.BILINEAR,
            Resampling.BOX,
            Resampling.HAMMING,
            Resampling.NEAREST,
        )
        return img.crop((p, p, w - p, h - p)).resize(img.size, methods[int(p1)])
    raise ValueError(f"no PIL reference for op {name!r}")


class PILWeak:
    def __init__(self, size: int, flip: bool = True, translate: float = 0.125) -> None:
        parts = [T.RandomHorizontalFlip()] if flip else []
        self.transform = T.Compose(
            [*parts, T.RandomCrop(size, padding=round(translate * size), padding_mode="reflect")]
        )

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.transform(img)


class PILRandAugment:
    """Weak, then 2 of FixMatch's 14 ops (p = 0.5 each, level U{1..9}), then a grey cutout
    (docs/reference/augmentation.md#randaugment-fixmatch)."""

    def __init__(self, size: int, cutout: float = 0.5) -> None:
        self.weak, self.size, self.cutout = PILWeak(size), size, cutout

    def __call__(self, img: Image.Image) -> Image.Image:
        img = self.weak(img)
        for _ in range(2):
            name = random.choice(RA_OPS)
            if random.random() >= 0.5:
                continue
            level, sign = random.randint(1, 9), random.choice((-1, 1))
            enhance = 0.1 + 0.18 * level if name in ("color", "contrast", "brightness", "sharpness") else 1.0
            p = {
                "rotate": sign * int(3 * level), "solarize": 256 - int(25.6 * level), "shear_x": sign * 0.03 * level,
                "shear_y": sign * 0.03 * level, "translate_x": sign * level, "translate_y": sign * level,
                "posterize": 4 - int(0.4 * level),
            }.get(name, enhance)  # fmt: skip
            img = pil_op(img, name, p, fill=128)
        side = round(self.cutout * self.size)
        return _cutout(img, side, random.randrange(self.size), random.randrange(self.size), 128)


class PILCTAugment:
    """Weak, then 2 CTAugment ops with values drawn per image from the bin weights, then cutout(v=1)
    (docs/reference/augmentation.md#ctaugment)."""

    def __init__(self, size: int, threshold: float = 0.8, decay: float = 0.99) -> None:
        self.weak, self.size, self.threshold, self.decay = PILWeak(size), size, threshold, decay
        self.rates = {k: [np.ones(b, np.float32) for b in bins] for k, bins in CTA_OPS.items()}

    def _value(self, rate: np.ndarray) -> float:
        p = rate + (1 - self.decay)
        p = p / p.max()
        p[p < self.threshold] = 0
        return (np.random.choice(len(p), p=p / p.sum()) + np.random.uniform()) / len(p)

    def __call__(self, img: Image.Image) -> Image.Image:
        img = self.weak(img)
        for _ in range(2):
            name = random.choice(list(CTA_OPS))
            v = [self._value(r) for r in self.rates[name]] + [0.0, 0.0]
            if name == "cutout":
                side = 2 * ((1 + int(v[0] * self.size * 0.499)) // 2)
                img = _cutout(img, side, random.randrange(self.size), random.randrange(self.size), 127)
                continue
            a, s = v[0], (2 * v[0] - 1) * 0.3
            p = {
                "brightness": 0.1 + 1.9 * a, "color": 0.1 + 1.9 * a, "contrast": 0.1 + 1.9 * a,
                "sharpness": 0.1 + 1.9 * a, "posterize": 1 + int(a * 7.999), "rescale": 0.25 * a * self.size,
                "rotate": round((2 * a - 1) * 45), "shear_x": s, "shear_y": s, "solarize": int(a * 255.999),
                "translate_x": s, "translate_y": s,
            }.get(name, a)  # fmt: skip
            img = pil_op(img, name, p, fill=0, p1=int(v[1] * 5.99))
        side = 2 * ((1 + int(self.size * 0.499)) // 2)
        return _cutout(img, side, random.randrange(self.size), random.randrange(self.size), 127)


def usb_pil_op(img: Image.Image, name: str, val: float) -> Image.Image:
    """One TorchSSL / USB op on one image at the reference's magnitude ``val`` (``ssl_bench.augment.usb``)."""
    if name in ("autocontrast", "equalize"):
        return getattr(ImageOps, name)(img)  # the magnitude is ignored
    if name == "posterize":
        return ImageOps.posterize(img, max(1, int(val)))
    if name == "rotate":
        return img.rotate(val)  # nearest, black fill: PIL's defaults
    if name == "solarize":
        return ImageOps.solarize(img, math.ceil(val))  # pixels >= val are inverted: for integers, those >= ceil(val)
    if name in ("translate_x", "translate_y"):
        px = val * img.size[0 if name == "translate_x" else 1]
        return img.transform(
            img.size, Transform.AFFINE, (1, 0, px, 0, 1, 0) if name == "translate_x" else (1, 0, 0, 0, 1, px)
        )
    if name in ("shear_x", "shear_y"):
        return img.transform(
            img.size, Transform.AFFINE, (1, val, 0, 0, 1, 0) if name == "shear_x" else (1, 0, 0, val, 1, 0)
        )
    return pil_op(img, name, val, fill=0)  # identity and the enhance factors


def usb_pil_cutout(img: Image.Image, v: float, x: float, y: float) -> Image.Image:
    """The reference's cutout: side ``v`` px (0: none), centre (x, y), drawn with ``ImageDraw.rectangle``."""
    if v <= 0:
        return img
    w, h = img.size
    x0, y0 = int(max(0.0, x - v / 2)), int(max(0.0, y - v / 2))
    img = img.copy()
    colour = USB_CUTOUT_FILL if img.mode == "RGB" else USB_CUTOUT_GREY
    ImageDraw.Draw(img).rectangle((x0, y0, min(w, x0 + v), min(h, y0 + v)), colour)
    return img


class PILRandAugmentUSB:
    """Weak, then 3 of the 14 TorchSSL / USB ops (always applied, magnitude uniform in its range), then a
    (125, 123, 114) cutout of side U[0, 0.5) x the width (docs/reference/common.md#torchssl-and-usb)."""

    def __init__(self, size: int, cutout: float = 0.5) -> None:
        self.weak, self.size, self.cutout = PILWeak(size), size, cutout

    def __call__(self, img: Image.Image) -> Image.Image:
        img = self.weak(img)
        for name in random.choices(USB_OPS, k=USB_N_OPS):
            low, high = USB_RANGES[name]
            img = usb_pil_op(img, name, low + (high - low) * random.random())
        w, h = img.size
        v = random.random() * self.cutout * w
        return usb_pil_cutout(img, v, np.random.uniform(w), np.random.uniform(h))  # uniform on (1, w], (1, h]


PIL_PIPELINES = {
    "weak": PILWeak,
    "randaugment": PILRandAugment,
    "ctaugment": PILCTAugment,
    "randaugment_usb": PILRandAugmentUSB,
}
