"""Π-Model: two weak views of each unlabeled image must agree (Laine & Aila, arXiv 1610.02242; Sajjadi et al.).

As re-implemented in google-research/fixmatch ``pi_model.py``, the Π-Model column of FixMatch's Table 2 (arXiv
2001.07685), per docs/algorithms/pi_model.md: a labeled pass whose BatchNorm update is kept, then one training-mode
pass per unlabeled view with its update discarded; the first view's softmax is a constant target for the second's
(no symmetric gradient); the squared difference is averaged over classes and images, weighted by λ = 10 and ramped
up linearly over the first 40 % of training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.algorithms.functional import frozen_bn_stats, linear_rampup, mse_probs
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class PiModelConfig(AlgorithmConfig):
    """Defaults: the flags of google-research/fixmatch pi_model.py (docs/algorithms/pi_model.md#hyper-parameters)."""

    name: str = "pi_model"
    # one unlabeled batch of B images, two weak views each (augment 'd.d.d')
    uratio: Annotated[int, Range("[1, inf)")] = 1
    wu: Annotated[float, Range("[0, inf)")] = 10.0  # λ, flag consistency_weight
    warmup: Annotated[float, Range("[0, 1]")] = 0.4  # flag warmup_pos: linear ramp over this fraction of training


@ALGORITHMS.register("pi_model")
class PiModel(Algorithm):
    Config = PiModelConfig
    cfg: PiModelConfig
    data_parallel = True  # per-image terms, means over the batch

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak", "weak"), uratio=self.cfg.uratio)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        logits_x = self.model(batch.x[0])
        # the unlabeled passes keep no BN update (docs/reference/common.md#gen-2-baselines)
        with frozen_bn_stats(self.model):
            with torch.no_grad():
                logits_target = self.model(batch.u[0])  # sg(f(view 1)): a constant target
            logits_u = self.model(batch.u[1])
        loss_x = F.cross_entropy(logits_x, batch.y)
        loss_u = mse_probs(logits_target, logits_u)
        wu = self.cfg.wu * linear_rampup(progress, self.cfg.warmup)
        loss = loss_x + wu * loss_u
        return loss, {"loss/x": loss_x.detach(), "loss/u": loss_u.detach(), "monitor/wu": wu}
