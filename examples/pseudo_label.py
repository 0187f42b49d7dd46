"""Pseudo-Label (Lee 2013), an ssl_bench algorithm that lives outside the package: a plugin module.

As re-implemented in google-research/fixmatch ``pseudo_label.py`` (the FixMatch paper's baseline, arXiv 2001.07685
Table 2): cross-entropy on the labeled images, plus cross-entropy of each weakly augmented unlabeled image against
its own argmax where the softmax exceeds the threshold, averaged over the whole unlabeled batch and ramped up
linearly over the first 40 % of training. BN statistics are updated by the labeled pass only.

Use it with ``--plugin pseudo_label`` (folder on PYTHONPATH) or ``plugins = ["pseudo_label"]`` in a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.algorithms.functional import confidence_mask, frozen_bn_stats, linear_rampup, masked_cross_entropy
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class PseudoLabelConfig(AlgorithmConfig):
    """Defaults are the flags of google-research/fixmatch pseudo_label.py (arXiv 2001.07685, Table 2 baseline)."""

    name: str = "pseudo_label"
    uratio: int = 1  # unlabeled images per labeled image (libml's MultiModel: one unlabeled batch of B)
    threshold: float = 0.95  # flag threshold
    wu: float = 1.0  # flag consistency_weight
    warmup: float = 0.4  # flag warmup_pos: the weight ramps up linearly over this fraction of training
    limits = {"uratio": "[1, inf)", "threshold": "[0, 1]", "wu": "[0, inf)", "warmup": "[0, 1]"}


@ALGORITHMS.register("pseudo_label")
class PseudoLabel(Algorithm):
    Config = PseudoLabelConfig

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak",), uratio=self.cfg.uratio)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        logits_x = self.model(batch.x[0])
        with frozen_bn_stats(self.model):  # the reference keeps the BN update of the labeled pass only
            logits_u = self.model(batch.u[0])
        loss_x = F.cross_entropy(logits_x, batch.y)
        pseudo, mask = confidence_mask(logits_u.detach().softmax(dim=1), self.cfg.threshold)
        loss_u = masked_cross_entropy(logits_u, pseudo, mask)
        wu = self.cfg.wu * linear_rampup(progress, self.cfg.warmup)
        loss = loss_x + wu * loss_u
        return loss, {
            "loss/x": loss_x.detach(),
            "loss/u": loss_u.detach(),
            "monitor/mask": mask.mean(),
            "monitor/wu": wu,
        }
