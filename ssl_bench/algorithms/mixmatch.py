"""MixMatch: sharpened guesses over K weak views, mixup of labeled and unlabeled (Berthelot et al., arXiv 1905.02249).

Behaviour of google-research/mixmatch ``mixmatch.py`` as in docs/algorithms/mixmatch.md and
docs/reference/common.md#mixup to docs/reference/common.md#interleave-and-batchnorm: guesses from the current weights in
training mode with their BN updates discarded, per-sample mixup with λ' = max(λ, 1 − λ) and one permutation over all
items, K + 1 interleaved passes of B keeping the BN update of the first, an L2 unlabeled loss averaged over samples and
classes, and a linear ramp-up of λ_U.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.algorithms.functional import (
    frozen_bn_stats,
    interleave,
    linear_rampup,
    mixup,
    sample_mixup,
    sharpen,
    soft_cross_entropy,
)
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class MixMatchConfig(AlgorithmConfig):
    """Defaults: the CIFAR-10 run scripts of google-research/mixmatch (docs/algorithms/mixmatch.md#hyper-parameters)."""

    name: str = "mixmatch"
    K: Annotated[int, Range("[1, inf)")] = 2  # weak views per unlabeled image (flag nu)
    T: Annotated[float, Range("(0, inf)")] = 0.5  # sharpening temperature
    alpha: Annotated[float, Range("(0, inf)")] = 0.75  # Beta(α, α) of mixup (flag beta; 0.25 for SVHN+extra)
    w_match: Annotated[float, Range("[0, inf)")] = 75.0  # λ_U (250 for SVHN, 50 for STL-10, 150 for CIFAR-100 large)
    # λ_U ramp length, fraction of training: 1,024 kimg of 65,536 kimg (16,384 steps)
    rampup: Annotated[float, Range("[0, 1]")] = 1 / 64


@ALGORITHMS.register("mixmatch")
class MixMatch(Algorithm):
    Config = MixMatchConfig
    cfg: MixMatchConfig
    not_split_because = "its MixUp partners and interleaved BatchNorm passes span the whole batch"
    # ssda would append labeled target images to x: the interleaved passes need x and u groups of one size
    settings = ("ssl", "uda")

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak",) * self.cfg.K, uratio=1)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg, x, u = self.cfg, batch.x[0], batch.u
        b = len(x)
        with torch.no_grad(), frozen_bn_stats(self.model):
            probs_u = torch.stack([self.model(u_k).softmax(dim=1) for u_k in u]).mean(dim=0)
            q = sharpen(probs_u, cfg.T)
        inputs = torch.cat([x, *u])
        targets = torch.cat([F.one_hot(batch.y, self.num_classes).float(), *([q] * len(u))])
        lam, perm = sample_mixup(len(inputs), cfg.alpha, x.device)
        mixed, mixed_targets = mixup(inputs, targets, lam, perm)
        groups = interleave(list(mixed.split(b)), b)
        # this pass's BN statistics update is the one kept (docs/reference/common.md#interleave-and-batchnorm)
        logits = [self.model(groups[0])]
        with frozen_bn_stats(self.model):
            logits += [self.model(g) for g in groups[1:]]
        logits = interleave(logits, b)
        logits_x, logits_u = logits[0], torch.cat(logits[1:])
        loss_x = soft_cross_entropy(logits_x, mixed_targets[:b])
        # mean over samples and classes (docs/reference/porting.md#first-wave-checklist item 8)
        loss_u = F.mse_loss(logits_u.softmax(dim=1), mixed_targets[b:])
        w_match = cfg.w_match * linear_rampup(progress, cfg.rampup)
        loss = loss_x + w_match * loss_u
        return loss, {"loss/x": loss_x.detach(), "loss/u": loss_u.detach(), "monitor/w_match": w_match}
