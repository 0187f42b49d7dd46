"""Pseudo-Label: each unlabeled image is trained towards its own confident argmax (Lee, ICML 2013 workshop).

As re-implemented in google-research/fixmatch ``pseudo_label.py``, the Pseudo-Labeling column of FixMatch's Table 2
(arXiv 2001.07685), per docs/algorithms/pseudo_label.md: a labeled pass whose BatchNorm update is kept, an unlabeled
pass (one weak view, μ = 1) whose update is discarded, the hard label argmax of that same pass with a strict
``max p > τ`` mask, and a weight ramped up linearly over the first 40 % of training.

The loss (docs/algorithms/pseudo_label.md#reference-step, erratum): the official code multiplies a per-image loss of
shape [B] by a mask of shape [B, 1] and averages the [B, B] product, which is mean(CE) × mean(mask): every unlabeled
image counts, confident or not, scaled by the fraction of confident ones. That is what produced the published column, so
it is the default (``variant = "broadcast"``); ``variant = "masked"`` is the per-image masked mean the paper and the
code's comment intend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.algorithms.functional import frozen_bn_stats, linear_rampup
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class PseudoLabelConfig(AlgorithmConfig):
    """Defaults: the flags of google-research/fixmatch pseudo_label.py
    (docs/algorithms/pseudo_label.md#hyper-parameters)."""

    name: str = "pseudo_label"
    uratio: Annotated[int, Range("[1, inf)")] = 1  # one unlabeled batch of B images per step (libml MultiModel)
    threshold: Annotated[float, Range("[0, 1]")] = 0.95  # τ, flag threshold; the mask is max p > τ (strict)
    wu: Annotated[float, Range("[0, inf)")] = 1.0  # flag consistency_weight
    # flag warmup_pos: the weight ramps up linearly over this fraction of training
    warmup: Annotated[float, Range("[0, 1]")] = 0.4
    variant: Literal["broadcast", "masked"] = "broadcast"  # mean(CE) x mean(mask) (official code) | mean(CE x mask)


@ALGORITHMS.register("pseudo_label")
class PseudoLabel(Algorithm):
    Config = PseudoLabelConfig
    cfg: PseudoLabelConfig
    data_parallel = True  # per-image terms; the broadcast loss's mask fraction is taken over the global batch

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak",), uratio=self.cfg.uratio)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg = self.cfg
        logits_x = self.model(batch.x[0])
        # only the labeled pass updates the BN statistics (docs/reference/common.md#gen-2-baselines)
        with frozen_bn_stats(self.model):
            logits_u = self.model(batch.u[0])
        loss_x = F.cross_entropy(logits_x, batch.y)
        conf, pseudo = logits_u.detach().softmax(dim=1).max(dim=1)
        mask = (conf > cfg.threshold).float()
        ce_u = F.cross_entropy(logits_u, pseudo, reduction="none")  # the gradient flows into the pass that labeled
        if cfg.variant == "broadcast":
            loss_u = ce_u.mean() * self.ranks.mean(mask.mean())
        else:
            loss_u = (ce_u * mask).mean()
        wu = cfg.wu * linear_rampup(progress, cfg.warmup)
        loss = loss_x + wu * loss_u
        return loss, {
            "loss/x": loss_x.detach(),
            "loss/u": loss_u.detach(),
            "monitor/mask": mask.mean(),
            "monitor/wu": wu,
        }
