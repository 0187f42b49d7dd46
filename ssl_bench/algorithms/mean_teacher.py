"""Mean Teacher: the EMA of the weights is the teacher of the live model (Tarvainen & Valpola, arXiv 1703.01780).

As re-implemented in google-research/fixmatch ``mean_teacher.py``, the Mean Teacher column of FixMatch's Table 2
(arXiv 2001.07685), per docs/algorithms/mean_teacher.md: a labeled pass whose BatchNorm update is kept; the teacher is
the trainer's EMA (decay ``train.ema_decay``, 0.999) as it stood before this step's update, run in training mode on
weak view 1 with its own batch statistics and no gradient; the student is the live model on weak view 2 (BN update
discarded). The squared difference of the softmaxes, averaged over classes and images, weighted by λ = 50 and ramped
up linearly over the first 40 % of training, trains the student only. The EMA the teacher uses is the model the
trainer evaluates, as in the TF code.
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
class MeanTeacherConfig(AlgorithmConfig):
    """Defaults: the flags of google-research/fixmatch mean_teacher.py
    (docs/algorithms/mean_teacher.md#hyper-parameters)."""

    name: str = "mean_teacher"
    uratio: Annotated[int, Range("[1, inf)")] = 1  # one unlabeled batch of B images, two weak views each
    wu: Annotated[float, Range("[0, inf)")] = 50.0  # λ, flag consistency_weight (on a mean over classes)
    warmup: Annotated[float, Range("[0, 1]")] = 0.4  # flag warmup_pos: linear ramp over this fraction of training


@ALGORITHMS.register("mean_teacher")
class MeanTeacher(Algorithm):
    Config = MeanTeacherConfig
    cfg: MeanTeacherConfig
    # per-image terms; with train.sync_bn the teacher's batch statistics are global too (the EMA model is converted)
    data_parallel = True

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak", "weak"), uratio=self.cfg.uratio)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        logits_x = self.model(batch.x[0])
        logits_teacher = self.teacher(batch.u[0], batch_stats=True)  # EMA weights, training-mode BN, no gradient
        # the student's unlabeled pass keeps no BN update (docs/reference/common.md#gen-2-baselines)
        with frozen_bn_stats(self.model):
            logits_student = self.model(batch.u[1])
        loss_x = F.cross_entropy(logits_x, batch.y)
        loss_u = mse_probs(logits_teacher, logits_student)
        wu = self.cfg.wu * linear_rampup(progress, self.cfg.warmup)
        loss = loss_x + wu * loss_u
        return loss, {"loss/x": loss_x.detach(), "loss/u": loss_u.detach(), "monitor/wu": wu}
