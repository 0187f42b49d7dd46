"""The strong augmentation of TorchSSL and USB as a batched policy, ``randaugment_usb``: the RandAugment behind the
FlexMatch, FreeMatch and SoftMatch tables (docs/reference/common.md#torchssl-and-usb, "Augmentation").

Read in microsoft/Semi-supervised-learning ``semilearn/datasets/augmentation/randaugment.py`` (stored version
8b7c8ea; line numbers below are that file's) and TorchSSL/TorchSSL ``datasets/augmentation/randaugment.py`` (stored
version 99cf3eb; its lines are one lower up to L161, because its licence header is one line shorter). Both build
``RandAugment(3, 5)``; per image:

* 3 ops drawn uniformly **with replacement** (``random.choices``, USB L196) from the 14 of ``augment_list``
  (L145-162): ``USB_OPS`` below, in that order. Every drawn op is **always applied**: no application probability,
  no level grid, ``m = 5`` is stored and never read.
* magnitude ``val = low + (high - low) * u``, u ~ U[0, 1) (L198), one draw per op, with no random sign: the sign
  flips of the FixMatch code are commented out in every op (e.g. L55-56), the ranges being symmetric instead.
  What each op does with ``val``, and the native parameter of ``ssl_bench.augment.ops`` it becomes:

  - AutoContrast, Equalize (L16-17, L35-36): the full op, ``val`` ignored -> blend 1; Identity (L43-44).
  - Brightness, Color, Contrast, Sharpness: PIL enhance factor ``val`` in [0.05, 0.95): they only ever darken,
    desaturate, flatten or soften, never enhance (FixMatch's range is [0.1, 1.9]).
  - Posterize (L47-50): ``int(val)`` of [4, 8), so 4, 5, 6 or 7 bits, 1/4 each; 8 bits would need ``val == 8``,
    which ``random.random() < 1`` never gives (``max(1, v)`` never acts). Native: floor(val), val kept below 8.
  - Rotate (L53-57): ``img.rotate(val)``, val in [-30, 30) degrees, not rounded to an integer.
  - ShearX / ShearY (L66-78): affine (1, val, 0, 0, 1, 0) / (1, 0, 0, val, 1, 0), val in [-0.3, 0.3).
  - TranslateX / TranslateY (L80-100): ``val * img.size[0]`` (width) / ``val * img.size[1]`` (height) pixels,
    val in [-0.3, 0.3): a fraction of the side (±9.6 px at 32 px), fractional, where FixMatch's code shifts by
    whole pixels.
  - Solarize (L110-112): threshold ``val`` in [0, 256) passed to PIL as a float, no integer rounding: pixels
    >= val, i.e. >= ceil(val), are inverted (the ``solarize`` op takes the float as is).
  - every geometric op uses PIL's defaults: nearest resampling and fill 0, black; not a colour (``fill = 0``).
* then ``Cutout(img, random.random() * 0.5)`` (L200; L115-142): v = U[0, 0.5) x the width, in float pixels
  (v = 0 leaves the image alone). The centre x comes from ``np.random.uniform(w)``, which is numpy's
  ``uniform(low=w, high=1)``, uniform on (1, w] (likewise y on (1, h]); the corner is
  x0 = int(max(0, x - v / 2)), and ``ImageDraw.rectangle((x0, y0, x1, y1))`` with x1 = min(w, x0 + v) fills both
  corners inclusive and truncates the float one: columns x0 .. x0 + int(v), clipped at the border. So the square
  has side int(v) + 1 (1 to 16 px at 32 px), its top-left corner at (x0, y0), and the colour (125, 123, 114)
  (L138). Native: side int(v) + 1, centre (y0 + side // 2, x0 + side // 2) for ``pixel.cutout``. The
  ``augment.cutout`` key is the bound 0.5 (default): the side fraction is U[0, cutout).

The two files differ only in what surrounds these ops: USB adds ``augment_list_no_color`` (L164-181: the 9 ops
without AutoContrast, Color, Contrast, Posterize and Solarize), chosen by ``RandAugment(n, m,
exclude_color_aug=True)`` (L185-190) and not by the classic-CV datasets; TorchSSL's constructor has no such
argument. The op bodies, ranges, sampling and cutout are the same. Where the two code bases differ is the order
around it: USB crops (reflect pad ``int(size * (1 - crop_ratio))``, 12.5 % per
docs/reference/common.md#torchssl-and-usb), flips, then applies RandAugment
(``semilearn/datasets/cv_datasets/cifar.py``, ``transform_strong``); TorchSSL inserts RandAugment at index 0 of the weak
transform (``datasets/dataset.py`` at 03193a1, ``BasicDataset.__init__``), so it runs **before** flip and crop, and the
crop then shifts and reflects the black fill and the cutout square; TorchSSL's pad is 4 px at every size
(``ssl_dataset.py`` ``get_transform`` at 67686df; a later stored version, 2264731, pads 12.5 %).

This policy follows USB's order: the strong view starts from the weak view (``augment.flip``,
``augment.translate``), as every strong policy of the suite does (``policies.Chain``). The ops run through
``ops.apply_ops`` one slot at a time, the cutout with the last: within one call apply_ops runs the pixel ops first
and composes the geometric ones into a single warp, which would change many of these chains (in 24 % of images a
warp comes before an autocontrast, equalize, contrast or sharpness, whose statistics or neighbourhoods then see the
black fill; 29 % draw two or more geometric ops, resampled once instead of once each). Slot by slot, every op sees
the output of the op drawn before it and every warp is one nearest resampling, as in the reference, so a whole chain
equals PIL's. The reference code needs RGB images (``ImageDraw`` refuses a 3-tuple on a grey image); on 1-channel
images the cutout is PIL's grey of the colour, L = 123.
"""

from __future__ import annotations

import torch

from ssl_bench.augment.ops import apply_ops, check_images
from ssl_bench.errors import ConfigError

# augment_list of both code bases, in its order, with each op's magnitude range (low, high)
USB_RANGES: dict[str, tuple[float, float]] = {
    "autocontrast": (0.0, 1.0), "brightness": (0.05, 0.95), "color": (0.05, 0.95), "contrast": (0.05, 0.95),
    "equalize": (0.0, 1.0), "identity": (0.0, 1.0), "posterize": (4.0, 8.0), "rotate": (-30.0, 30.0),
    "sharpness": (0.05, 0.95), "shear_x": (-0.3, 0.3), "shear_y": (-0.3, 0.3), "solarize": (0.0, 256.0),
    "translate_x": (-0.3, 0.3), "translate_y": (-0.3, 0.3),
}  # fmt: skip
USB_OPS = tuple(USB_RANGES)
USB_N_OPS = 3  # RandAugment(3, 5) in both code bases
USB_BLACK = 0  # fill of the geometric ops: PIL's default
USB_CUTOUT_FILL = (125, 123, 114)
USB_CUTOUT_GREY = 123  # PIL's L of the colour: (19595 * 125 + 38470 * 123 + 7471 * 114 + 2**15) >> 16
# the largest float32 below each range's high end: low + (high - low) * u can round up to high in float32
_BELOW = {
    name: float(torch.nextafter(torch.tensor(high), torch.tensor(low))) for name, (low, high) in USB_RANGES.items()
}


def magnitudes(ids: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The reference's ``val = low + (high - low) * u`` of each drawn op (``ids`` into ``USB_OPS``), u in [0, 1),
    kept below ``high`` as ``random.random() < 1`` keeps it (so posterize never reaches 8 bits)."""
    val = torch.zeros_like(u)
    for k, (name, (low, high)) in enumerate(USB_RANGES.items()):
        val = torch.where(ids == k, (low + (high - low) * u).clamp_(max=_BELOW[name]), val)
    return val


def native_params(ids: torch.Tensor, val: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Native parameter p0 of each op (``ssl_bench.augment.ops``) for the reference's magnitude ``val``."""
    full = torch.ones_like(val)
    table = {
        "autocontrast": full, "equalize": full, "brightness": val, "color": val, "contrast": val, "sharpness": val,
        "posterize": torch.floor(val), "rotate": val, "shear_x": val, "shear_y": val, "solarize": val,
        "translate_x": val * w, "translate_y": val * h,
    }  # fmt: skip
    p0 = torch.zeros_like(val)
    for name, value in table.items():
        p0 = torch.where(ids == USB_OPS.index(name), value, p0)
    return p0


def cutout_params(v: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, 3) ``pixel.cutout`` parameters (side, cy, cx) of the reference's square: side ``v`` in float pixels,
    centre (x, y) as ``np.random.uniform`` drew it; the corner is int(max(0, c - v / 2)), the side int(v) + 1,
    none for v = 0 (see the module docstring)."""
    side = torch.where(v > 0, torch.floor(v) + 1, torch.zeros_like(v))
    x0 = torch.floor((x - v / 2).clamp_min(0))
    y0 = torch.floor((y - v / 2).clamp_min(0))
    half = torch.floor(side / 2)
    return torch.stack([side, y0 + half, x0 + half], dim=1)


class RandAugmentUSB:
    """Per sample: 3 of the 14 TorchSSL/USB ops drawn uniformly with replacement, each always applied with a
    magnitude uniform in its range, black fill; then a (125, 123, 114) cutout of side U[0, ``cutout``) x the width
    at a centre uniform on (1, w] x (1, h] (the module docstring has the details and the sources)."""

    names = (*USB_OPS, "cutout")

    def __init__(self, cutout: float = 0.5) -> None:
        if not 0.0 <= cutout <= 1.0:
            raise ConfigError(f"randaugment_usb: augment.cutout must lie in [0, 1], got {cutout}")
        self.cutout = cutout

    def draw(self, n: int, h: int, w: int, generator: torch.Generator, device: torch.device):
        """What the reference draws per image: op ids (N, 3) into ``USB_OPS``, their magnitudes ``val`` (N, 3),
        and the cutout's side ``v`` in pixels and centre ``x``, ``y`` (N,) each."""
        ids = torch.randint(0, len(USB_OPS), (n, USB_N_OPS), generator=generator, device=device)
        val = magnitudes(ids, torch.rand(n, USB_N_OPS, generator=generator, device=device))
        v = torch.rand(n, generator=generator, device=device) * self.cutout * w
        x = w - (w - 1) * torch.rand(n, generator=generator, device=device)  # numpy's uniform(low=w, high=1)
        y = h - (h - 1) * torch.rand(n, generator=generator, device=device)
        return ids, val, v, x, y

    def sample(self, n: int, h: int, w: int, generator: torch.Generator, device: torch.device):
        """Op ids (N, 4) into ``names`` and native parameters (N, 4, 3); the last slot is the cutout."""
        ids, val, v, x, y = self.draw(n, h, w, generator, device)
        params = torch.zeros(n, USB_N_OPS + 1, 3, device=device)
        params[:, :USB_N_OPS, 0] = native_params(ids, val, h, w)
        params[:, USB_N_OPS] = cutout_params(v, x, y)
        cut = torch.full((n, 1), len(USB_OPS), dtype=torch.long, device=device)
        return torch.cat([ids, cut], dim=1), params

    def apply(self, images: torch.Tensor, ids: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Run sampled ops slot by slot, in the drawn order (see the module docstring), the cutout last."""
        fill = USB_CUTOUT_FILL if images.shape[1] == 3 else USB_CUTOUT_GREY
        out = images
        for d in range(USB_N_OPS):
            slots = slice(d, d + 2 if d == USB_N_OPS - 1 else d + 1)  # the cutout goes with the last op
            out = apply_ops(out, self.names, ids[:, slots], params[:, slots], USB_BLACK, fill, check=False)
        return out

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(images)
        n, _, h, w = images.shape
        return self.apply(images, *self.sample(n, h, w, generator, images.device))
