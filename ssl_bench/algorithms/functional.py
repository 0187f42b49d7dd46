"""Shared SSL maths as pure functions: sharpening, mixup, interleave, masks, distribution alignment, ramps, BN.

Each follows docs/reference/common.md (section cited per function), which describes the authors' code for
MixMatch (arXiv 1905.02249), ReMixMatch (arXiv 1911.09785), FixMatch (arXiv 2001.07685) and AdaMatch
(arXiv 2106.04732).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.devices import to_device


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T) renormalised over classes: a power on probabilities, not softmax(z / T)
    (docs/algorithms/mixmatch.md#reference-step, docs/reference/porting.md#first-wave-checklist item 9)."""
    q = p.pow(1.0 / temperature)
    return q / q.sum(dim=1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c target_c log softmax(logits)_c (targets are probability vectors)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def sample_mixup(n: int, alpha: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample λ' = max(λ, 1 − λ) with λ ~ Beta(α, α), and one permutation of the n items
    (docs/reference/common.md#mixup).

    Draws from torch's global generator (saved in checkpoints), so runs are reproducible and resumable.
    """
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)), validate_args=False)
    lam = beta.sample((n,))
    lam = to_device(torch.maximum(lam, 1 - lam), device)
    perm = to_device(torch.randperm(n), device)
    return lam, perm


def mixup(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix every item with item perm[i], inputs and targets with the same per-sample λ
    (docs/reference/common.md#mixup)."""
    lx = lam.view(-1, *([1] * (x.ndim - 1)))
    ly = lam.view(-1, *([1] * (y.ndim - 1)))
    return lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm]


def interleave_offsets(batch: int, groups: int) -> list[int]:
    """Chunk boundaries of a batch split into ``groups`` near-equal chunks, remainder to the last chunks (§A.1)."""
    sizes = [batch // groups] * groups
    for i in range(batch - sum(sizes)):
        sizes[-i - 1] += 1
    return [0, *itertools.accumulate(sizes)]


def interleave(batches: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Swap chunk i of batch 0 with chunk i of batch i (i >= 1) so that every pass holds some labeled items.

    An involution: applying it to the outputs restores the original order
    (docs/reference/common.md#interleave-and-batchnorm).
    """
    groups = len(batches)
    o = interleave_offsets(batch, groups)
    parts = [[t[o[g] : o[g + 1]] for g in range(groups)] for t in batches]
    for i in range(1, groups):
        parts[0][i], parts[i][i] = parts[i][i], parts[0][i]
    return [torch.cat(p) for p in parts]


def confidence_mask(probs: torch.Tensor, threshold: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pseudo-labels argmax p, float mask [max p >= threshold]) (FixMatch docs/algorithms/fixmatch.md#reference-step;
    AdaMatch with a relative τ)."""
    conf, labels = probs.max(dim=1)
    return labels, (conf >= threshold).float()


def relative_threshold(probs_x_weak: torch.Tensor, tau: float) -> torch.Tensor:
    """AdaMatch's c_τ = τ · mean_b max_c p(weak source)_b,c (docs/algorithms/adamatch.md#reference-step step 2)."""
    return tau * probs_x_weak.max(dim=1).values.mean()


def align(probs: torch.Tensor, p_target: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """Distribution alignment: normalise(p · (1e-6 + p_target) / (1e-6 + p_model))
    (docs/algorithms/remixmatch.md#reference-step b, docs/algorithms/adamatch.md#reference-step step 3)."""
    q = probs * (1e-6 + p_target) / (1e-6 + p_model)
    return q / q.sum(dim=1, keepdim=True)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ mask · CE / (full batch size), not / (number of confident samples)
    (docs/reference/porting.md#first-wave-checklist item 11)."""
    return (F.cross_entropy(logits, labels, reduction="none") * mask).mean()


def linear_rampup(progress: float, length: float) -> float:
    """clip(progress / length, 0, 1); ``length`` is a fraction of training (1/64 = 1024 kimg of 2^20 steps)."""
    return 1.0 if length <= 0 else min(max(progress / length, 0.0), 1.0)


def half_cosine_warmup(progress: float, length: float = 0.5, final: float = 1.0) -> float:
    """AdaMatch's weight (docs/algorithms/adamatch.md#reference-step): ½ − ½ cos(π t / length) from 0 to 1 over t <=
    length, then a second half-cosine from 1 to ``final`` over the rest (the adamatch repo's ScheduleCosPhases(1, [(0.5,
    1), (1, wu)]))."""
    if progress < length:
        return 0.5 - 0.5 * math.cos(math.pi * progress / length)
    if final == 1.0 or length >= 1.0:
        return 1.0
    t = min((progress - length) / (1.0 - length), 1.0)
    return 1.0 + (final - 1.0) * (0.5 - 0.5 * math.cos(math.pi * t))


class FIFOMean(nn.Module):
    """Mean of the last ``size`` pushed vectors, initialised to uniform rows (ReMixMatch's PMovingAverage
    docs/reference/common.md#distribution-estimates, AdaMatch's p(unlabeled)
    docs/algorithms/adamatch.md#reference-step). Buffers, so checkpoints hold it."""

    rows: torch.Tensor  # buffers, registered in __init__ (nn.Module's __getattr__ types them only as Tensor | Module)
    pos: torch.Tensor

    def __init__(self, num_classes: int, size: int = 128) -> None:
        super().__init__()
        self.register_buffer("rows", torch.full((size, num_classes), 1.0 / num_classes))
        self.register_buffer("pos", torch.zeros((), dtype=torch.long))

    def value(self) -> torch.Tensor:
        m = self.rows.mean(dim=0)
        return m / m.sum()

    @torch.no_grad()
    def push(self, row: torch.Tensor) -> None:
        # index_copy_ with the position as a tensor: indexing with it would read it on the host
        self.rows.index_copy_(0, self.pos.view(1), row.detach().to(self.rows.dtype)[None])
        self.pos.copy_((self.pos + 1) % self.rows.shape[0])


class EMAVector(nn.Module):
    """p ← decay · p + (1 − decay) · x, initialised uniform (ReMixMatch's PData, AdaMatch's p(labeled))."""

    p: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, num_classes: int, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("p", torch.full((num_classes,), 1.0 / num_classes))

    def value(self) -> torch.Tensor:
        return self.p

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> torch.Tensor:
        self.p.mul_(self.decay).add_(x.detach().to(self.p.dtype), alpha=1 - self.decay)
        return self.p


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Training-mode passes (batch statistics) that leave the BN running statistics untouched
    (docs/reference/common.md#interleave-and-batchnorm, §A.2).

    The passes update throw-away copies of the running statistics; the originals are put back on exit, never
    written in place, because autograd keeps them for the backward pass of other forward passes.
    """
    saved = []
    for m in batch_norms(model):
        mean, var, count = m.running_mean, m.running_var, m.num_batches_tracked  # set together, or all None
        if m.track_running_stats and mean is not None and var is not None and count is not None:
            saved.append((m, mean, var, count))
            m.running_mean, m.running_var, m.num_batches_tracked = mean.clone(), var.clone(), count.clone()
    try:
        yield
    finally:
        for m, mean, var, count in saved:
            m.running_mean, m.running_var, m.num_batches_tracked = mean, var, count


def joint_pass(model: nn.Module, *groups: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Logits of one training-mode pass over the groups concatenated, split back per group: BatchNorm statistics over
    every image and its update kept, as FixMatch and the TorchSSL methods do
    (docs/reference/common.md#interleave-and-batchnorm)."""
    return model(torch.cat(groups)).split([len(g) for g in groups])


def mse_probs(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """mean over samples and classes of (softmax(a) - softmax(b))², the Π-Model / Mean Teacher consistency of the
    fixmatch repo (docs/algorithms/pi_model.md#reference-step, docs/algorithms/mean_teacher.md#reference-step)."""
    return (logits_a.softmax(dim=1) - logits_b.softmax(dim=1)).pow(2).mean()
