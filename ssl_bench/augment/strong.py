"""Strong policies as batched per-sample tensor ops: RandAugment as FixMatch used it, and CTAugment.

Sources: docs/reference/augmentation.md#randaugment-fixmatch (FixMatch's RandAugment, ``AugmentPoolRAMC``),
docs/reference/augmentation.md#ctaugment (CTAugment, ``libml/ctaugment.py``),
docs/reference/porting.md#first-wave-checklist item 14; CTAugment is from ReMixMatch, arXiv 1911.09785, Section 3.2.
"""

from __future__ import annotations

import torch

from ssl_bench.augment.host_reads import count_values
from ssl_bench.augment.ops import apply_ops, check_images
from ssl_bench.config import AugmentConfig
from ssl_bench.config_checks import field_choices
from ssl_bench.errors import ConfigError

# FixMatch's RandAugment op list (docs/reference/augmentation.md#randaugment-fixmatch)
RA_OPS = (
    "identity", "autocontrast", "equalize", "rotate", "solarize", "color", "contrast", "brightness", "sharpness",
    "shear_x", "translate_x", "translate_y", "posterize", "shear_y",
)  # fmt: skip
# exposed and cut-out pixels are 0 in [-1, 1], i.e. mid-grey (docs/reference/augmentation.md#randaugment-fixmatch)
RA_GREY = 128


def _uniform(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device)


def sample_categorical(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``weights`` (R, K), row-wise with probability proportional to the weights: the
    exponential race argmax(w / E), E ~ Exp(1), which is what ``torch.multinomial(weights, 1)`` computes after
    checking the weights on the host. The same draws from the same generator state, without that check (the
    weights of a policy are valid by construction), so nothing waits for the device."""
    race = torch.empty_like(weights).exponential_(1, generator=generator)
    return torch.div(weights, race).argmax(dim=-1, keepdim=True)


def cutout_params(side: torch.Tensor, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """(N, 3) cutout parameters: side, and a centre uniform over the pixels (the square is clipped at borders)."""
    n, device = side.shape[0], side.device
    cy = torch.randint(0, h, (n,), generator=generator, device=device)
    cx = torch.randint(0, w, (n,), generator=generator, device=device)
    return torch.stack([side.float(), cy.float(), cx.float()], dim=1)


class RandAugment:
    """Per sample: ``n_ops`` ops drawn uniformly with replacement, each applied with probability ``prob`` at a
    level drawn from U{1..9}; then a cutout of side ``cutout`` x the image side (16 px at 32 px).
    """

    names = (*RA_OPS, "cutout")

    def __init__(self, n_ops: int = 2, prob: float = 0.5, cutout: float = 0.5) -> None:
        if n_ops < 1:
            raise ConfigError(f"randaugment needs at least one op per image, got {n_ops}")
        if not 0.0 <= prob <= 1.0 or not 0.0 <= cutout <= 1.0:
            raise ConfigError("randaugment prob and augment.cutout must lie in [0, 1]")
        self.n_ops, self.prob, self.cutout = n_ops, prob, cutout

    def sample(self, n: int, h: int, w: int, generator: torch.Generator, device: torch.device):
        """Op ids (N, n_ops + 1) into ``names`` and native parameters (N, n_ops + 1, 3); last slot = cutout."""
        d = self.n_ops
        ids = torch.randint(0, len(RA_OPS), (n, d), generator=generator, device=device)
        active = torch.rand(n, d, generator=generator, device=device) < self.prob
        ids = torch.where(active, ids, torch.zeros_like(ids))  # an op not applied is the identity
        level = torch.randint(1, 10, (n, d), generator=generator, device=device).float()
        sign = torch.where(torch.rand(n, d, generator=generator, device=device) < 0.5, -1.0, 1.0)
        p0 = torch.zeros(n, d, device=device)
        table = {
            "rotate": sign * torch.floor(3 * level),  # ±int(3l) degrees
            "solarize": 256 - torch.floor(25.6 * level),  # invert pixels >= 256 - int(25.6l)
            "color": 0.1 + 0.18 * level,  # PIL enhance factor 0.1 + 1.8 l / 10
            "contrast": 0.1 + 0.18 * level,
            "brightness": 0.1 + 0.18 * level,
            "sharpness": 0.1 + 0.18 * level,
            "shear_x": sign * 0.03 * level,
            "shear_y": sign * 0.03 * level,
            # pixels, not a fraction of the side (docs/reference/augmentation.md#randaugment-fixmatch)
            "translate_x": sign * level,
            "translate_y": sign * level,
            "posterize": 4 - torch.floor(0.4 * level),
            "autocontrast": torch.ones_like(level),  # full blend: the op itself
            "equalize": torch.ones_like(level),
        }
        for name, value in table.items():
            mask = ids == RA_OPS.index(name)
            p0 = torch.where(mask, value, p0)
        params = torch.zeros(n, d + 1, 3, device=device)
        params[:, :d, 0] = p0
        side = torch.full((n,), round(self.cutout * min(h, w)), device=device)
        params[:, d] = cutout_params(side, h, w, generator)
        cut = torch.full((n, 1), len(RA_OPS), dtype=torch.long, device=device)
        return torch.cat([ids, cut], dim=1), params

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(images)
        n, _, h, w = images.shape
        ids, params = self.sample(n, h, w, generator, images.device)
        return apply_ops(images, list(self.names), ids, params, fill=RA_GREY, cutout_fill=RA_GREY, check=False)


# CTAugment ops and the number of bins of each of their parameters (docs/reference/augmentation.md#ctaugment)
CTA_OPS: dict[str, tuple[int, ...]] = {
    "autocontrast": (17,), "blur": (17,), "brightness": (17,), "color": (17,), "contrast": (17,), "cutout": (17,),
    "equalize": (17,), "identity": (), "invert": (17,), "posterize": (8,), "rescale": (17, 6), "rotate": (17,),
    "sharpness": (17,), "shear_x": (17,), "shear_y": (17,), "smooth": (17,), "solarize": (17,),
    "translate_x": (17,), "translate_y": (17,),
}  # fmt: skip
# geometric fill is black, cutout fill (127, 127, 127) (docs/reference/augmentation.md#ctaugment)
CTA_BLACK, CTA_CUTOUT_GREY = 0, 127
MAX_PARAMS, MAX_BINS = 2, 17


class CTRecord:
    """What a probe policy drew: op ids (N, depth) and parameter values (N, depth, 2) in [0, 1]."""

    def __init__(self, ids: torch.Tensor, values: torch.Tensor) -> None:
        self.ids, self.values = ids, values


def check_cta_choices(sampling: str, translate: str, rescale: str) -> None:
    """The named variants of CTAugment (docs/reference/augmentation.md#ctaugment), as ``AugmentConfig`` declares them:
    ``augment.cta_sampling``, ``cta_translate`` and ``cta_rescale`` (a CTAugment built in Python has not been through a
    recipe's checks)."""
    for key, value in (("cta_sampling", sampling), ("cta_translate", translate), ("cta_rescale", rescale)):
        choices = field_choices(AugmentConfig, key) or ()
        if value not in choices:
            raise ConfigError(f"augment.{key} must be {' or '.join(choices)}, got {value!r}")


class CTAugment:
    """Control-theory augmentation: per op parameter, bin weights learned from how well the EMA model still
    classifies probe images (ReMixMatch, arXiv 1911.09785 Section 3.2; docs/reference/augmentation.md#ctaugment).

    ``sampling``: ``fixmatch`` (bin ~ Cat(p), value uniform in the bin; FixMatch and AdaMatch) or ``remixmatch``
    (segment j ~ Cat(p_j + p_j+1), value uniform in the segment). ``cutout``: append cutout(v=1) to every training
    policy (FixMatch, AdaMatch) or not (ReMixMatch). ``translate``: ``pixels`` keeps the reference code's offset of
    at most 0.3 px (a near no-op, the default for faithful reproduction) and ``fraction`` the papers' ±30 % of the
    side. ``rescale``: ``fraction`` crops 0.25v of the side (fixmatch/adamatch code) and ``pixels`` 0.25v px
    (remixmatch code, an exact no-op in modern Pillow).
    """

    names = tuple(CTA_OPS)

    def __init__(
        self,
        depth: int = 2,
        threshold: float = 0.8,
        decay: float = 0.99,
        sampling: str = "fixmatch",
        cutout: bool = True,
        translate: str = "pixels",
        rescale: str = "fraction",
    ) -> None:
        check_cta_choices(sampling, translate, rescale)
        if depth < 1 or not 0.0 < decay < 1.0 or not 0.0 <= threshold <= 1.0:
            raise ConfigError("CTAugment needs depth >= 1, decay in (0, 1) and threshold in [0, 1]")
        self.depth, self.threshold, self.decay = depth, threshold, decay
        self.sampling, self.cutout, self.translate, self.rescale = sampling, cutout, translate, rescale
        nbins = torch.zeros(len(CTA_OPS), MAX_PARAMS, dtype=torch.long)
        for k, bins in enumerate(CTA_OPS.values()):
            nbins[k, : len(bins)] = torch.tensor(bins, dtype=torch.long)
        self.nbins = nbins  # (ops, 2); 0 where the op has no such parameter
        self.offsets = (torch.cumsum(nbins.flatten(), 0) - nbins.flatten()).view_as(nbins)
        self.rates = torch.ones(int(nbins.sum()))  # flat: every bin of every parameter of every op, start at 1

    # ------------------------------------------------------------------------------------------------------
    # state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"rates": self.rates.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        rates = state["rates"]
        if rates.shape != self.rates.shape:
            raise ConfigError(f"CTAugment state has {rates.numel()} bins, expected {self.rates.numel()}")
        self.rates = rates.to(self.rates.device, torch.float32).clone()

    def _to(self, device: torch.device) -> None:
        if self.rates.device != device:
            self.rates, self.nbins, self.offsets = (t.to(device) for t in (self.rates, self.nbins, self.offsets))

    def probabilities(self) -> torch.Tensor:
        """(ops, 2, 17) sampling weights per bin: p = rate + (1 - decay), normalised by its max, zero below th."""
        nb = self.nbins
        idx = self.offsets[..., None] + torch.arange(MAX_BINS, device=nb.device)
        valid = torch.arange(MAX_BINS, device=nb.device) < nb[..., None]
        rate = self.rates[idx.clamp(max=self.rates.numel() - 1)]
        p = torch.where(valid, rate + (1 - self.decay), torch.zeros_like(rate))
        p = p / p.amax(dim=-1, keepdim=True).clamp_min(1e-12)
        return torch.where(p < self.threshold, torch.zeros_like(p), p)

    # ------------------------------------------------------------------------------------------------------
    # sampling

    def sample_values(self, ids: torch.Tensor, generator: torch.Generator, probe: bool) -> torch.Tensor:
        """Parameter values (N, D, 2) in [0, 1): uniform for probes, else from the learned bin weights."""
        n, d = ids.shape
        u = torch.rand(n, d, MAX_PARAMS, generator=generator, device=ids.device)
        if probe:
            return u
        p = self.probabilities()[ids]  # (N, D, 2, 17)
        nb = self.nbins[ids].float()  # (N, D, 2)
        if self.sampling == "remixmatch":
            slots = (nb - 1).clamp_min(1)  # nbins - 1 segments between adjacent bins
            seg = torch.arange(MAX_BINS - 1, device=ids.device) < slots[..., None]
            p = torch.where(seg, p[..., 1:] + p[..., :-1], torch.zeros_like(p[..., 1:]))
        else:
            slots = nb.clamp_min(1)
        flat = p.reshape(-1, p.shape[-1])
        flat = torch.where(flat.sum(1, keepdim=True) > 0, flat, torch.ones_like(flat))  # unused parameter rows
        b = sample_categorical(flat, generator).view(n, d, MAX_PARAMS).float()
        return ((b + u) / slots).clamp(0, 1 - 1e-6)

    def native_params(self, ids: torch.Tensor, v: torch.Tensor, h: int, w: int, generator: torch.Generator):
        """Map values in [0, 1] to each op's native parameter (N, D, 3), as the reference ops do
        (docs/reference/augmentation.md#ctaugment)."""
        v0, v1 = v[..., 0], v[..., 1]
        size = min(h, w)
        side = 2 * torch.div(1 + torch.floor(v0 * size * 0.499), 2, rounding_mode="floor")
        px = 0.25 * v0 * (size if self.rescale == "fraction" else 1.0)
        shift = (2 * v0 - 1) * 0.3 * (size if self.translate == "fraction" else 1.0)
        table = {
            "autocontrast": v0, "blur": v0, "equalize": v0, "invert": v0, "smooth": v0,
            "brightness": 0.1 + 1.9 * v0, "color": 0.1 + 1.9 * v0, "contrast": 0.1 + 1.9 * v0,
            "sharpness": 0.1 + 1.9 * v0, "cutout": side, "posterize": 1 + torch.floor(v0 * 7.999),
            "rescale": px, "rotate": torch.round((2 * v0 - 1) * 45), "shear_x": (2 * v0 - 1) * 0.3,
            "shear_y": (2 * v0 - 1) * 0.3, "solarize": torch.floor(v0 * 255.999), "translate_x": shift,
            "translate_y": shift,
        }  # fmt: skip
        p0 = torch.zeros_like(v0)
        for name, value in table.items():
            p0 = torch.where(ids == self.names.index(name), value, p0)
        n, d = ids.shape
        centre = cutout_params(torch.zeros(n * d, device=ids.device), h, w, generator).view(n, d, 3)
        is_rescale, is_cutout = ids == self.names.index("rescale"), ids == self.names.index("cutout")
        zero = torch.zeros_like(v1)
        p1 = torch.where(is_rescale, torch.floor(v1 * 5.99), torch.where(is_cutout, centre[..., 1], zero))
        p2 = torch.where(is_cutout, centre[..., 2], zero)
        return torch.stack([p0, p1, p2], dim=-1)

    def _apply(self, images: torch.Tensor, ids: torch.Tensor, v: torch.Tensor, generator: torch.Generator):
        _, _, h, w = images.shape
        params = self.native_params(ids, v, h, w, generator)
        return apply_ops(
            images, list(self.names), ids, params, fill=CTA_BLACK, cutout_fill=CTA_CUTOUT_GREY, check=False
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Training policy: ``depth`` ops drawn uniformly, values from the bin weights, then cutout(v=1) if set."""
        check_images(images)
        self._to(images.device)
        n = images.shape[0]
        ids = torch.randint(0, len(self.names), (n, self.depth), generator=generator, device=images.device)
        v = self.sample_values(ids, generator, probe=False)
        if self.cutout:
            cut = torch.full((n, 1), self.names.index("cutout"), dtype=torch.long, device=images.device)
            ids = torch.cat([ids, cut], dim=1)
            v = torch.cat([v, torch.ones(n, 1, MAX_PARAMS, device=images.device)], dim=1)
        return self._apply(images, ids, v, generator)

    def probe(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, CTRecord]:
        """Probe policy: ``depth`` ops drawn uniformly with uniform values (weights ignored); no cutout."""
        check_images(images)
        self._to(images.device)
        n = images.shape[0]
        ids = torch.randint(0, len(self.names), (n, self.depth), generator=generator, device=images.device)
        v = self.sample_values(ids, generator, probe=True)
        return self._apply(images, ids, v, generator), CTRecord(ids, v)

    @torch.no_grad()
    def update(self, record: CTRecord, omega: torch.Tensor) -> None:
        """rate[bin] <- decay * rate[bin] + (1 - decay) * omega for every (example, op, parameter) of the probes.

        omega is the EMA model's probability of the true class on each probe (= 1 - ½ L1 distance to the one-hot).
        Updates are applied in the reference's order (example, slot, parameter); repeated hits of one bin
        compound exactly as the sequential loop would: r <- decay^m r + (1 - decay) sum_t decay^(m-1-t) omega_t.
        """
        ids, v = record.ids.to(self.rates.device), record.values.to(self.rates.device)
        nb = self.nbins[ids]  # (N, D, 2)
        bins = torch.floor(v * nb * 0.999).long()
        # Parameters an op does not have go to one spare key past the last bin, so that the shapes never depend on
        # the draws (no host read); the spare's count and contribution are dropped at the end.
        spare = self.rates.numel()
        keys = torch.where(nb > 0, self.offsets[ids] + bins, spare).view(-1)  # (example, slot, parameter) order
        om = omega.to(self.rates.device, torch.float32)[:, None, None].expand_as(v).reshape(-1)
        counts = count_values(keys, spare + 1)
        sorted_keys, order = torch.sort(keys, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(keys), device=keys.device) - starts[sorted_keys]
        weight = self.decay ** (counts[sorted_keys] - rank - 1).float()
        contrib = torch.zeros(spare + 1, device=keys.device).index_add_(0, sorted_keys, weight * om[order])[:spare]
        self.rates = self.decay ** counts[:spare].float() * self.rates + (1 - self.decay) * contrib
