"""Temporal Ensembling (Laine & Aila, arXiv 1610.02242, Section 2.2), an ssl_bench algorithm that lives outside the
package: a plug-in that keeps one running prediction per unlabeled image and can fill it from the teacher.

Each unlabeled image i has an ensemble Z_i, the exponential moving average (momentum α) of the predictions made
for it each time it was drawn; the target is Z_i / (1 − α^t_i), corrected for its start at zero after t_i updates,
and the loss adds the squared difference between the current prediction and that target, averaged over classes and
images (images never drawn before have no target yet), ramped up linearly. The paper updates Z once per epoch and
ramps with a Gaussian; here Z is updated whenever an image is drawn (``batch.idx_u`` says which) and the ramp is the
linear one of the suite's Π-Model. ``ensemble_of = "teacher"`` fills Z with the predictions of the trainer's EMA
model (``self.teacher``) instead of the model's own: what Mean Teacher (arXiv 1703.01780, Section 2) set against
Temporal Ensembling. An example of the algorithm API (docs/adding-an-algorithm.md#adding-an-algorithm), not one of the
suite's benchmarked algorithms.

Use it with ``--plugin temporal_ensembling`` (this folder on PYTHONPATH) or ``plugins = ["temporal_ensembling"]`` in
a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig, DataInfo
from ssl_bench.algorithms.functional import linear_rampup
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class TemporalEnsemblingConfig(AlgorithmConfig):
    """Defaults: α = 0.6 (arXiv 1610.02242 Section 3); the weight and its ramp as the suite's Π-Model (fixmatch
    repo)."""

    name: str = "temporal_ensembling"
    uratio: Annotated[int, Range("[1, inf)")] = 1  # one unlabeled batch of B images per step
    alpha: Annotated[float, Range("[0, 1)")] = 0.6  # ensemble momentum
    wu: Annotated[float, Range("[0, inf)")] = 10.0  # weight of the consistency loss after the ramp
    warmup: Annotated[float, Range("[0, 1]")] = 0.4  # linear ramp over this fraction of training
    ensemble_of: Literal["student", "teacher"] = "student"  # whose predictions enter Z


@ALGORITHMS.register("temporal_ensembling")
class TemporalEnsembling(Algorithm):
    Config = TemporalEnsemblingConfig

    def __init__(self, model: nn.Module, cfg: TemporalEnsemblingConfig, num_classes: int, data: DataInfo | None = None):
        super().__init__(model, cfg, num_classes, data)
        # one row per training image (positions in [0, data.n_train)): buffers, so a checkpoint holds them
        self.register_buffer("ensemble", torch.zeros(self.data.n_train, num_classes))
        self.register_buffer("updates", torch.zeros(self.data.n_train, dtype=torch.long))

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak",), uratio=self.cfg.uratio)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg, idx = self.cfg, batch.idx_u
        x, u = batch.x[0], batch.u[0]
        logits_x, logits_u = self.model(torch.cat([x, u])).split([len(x), len(u)])
        probs_u = logits_u.softmax(dim=1)
        with torch.no_grad():
            t = self.updates[idx]
            target = self.ensemble[idx] / (1 - cfg.alpha ** t.float()).clamp_min(1e-12)[:, None]
            seen = (t > 0).float()  # an image drawn for the first time has no target yet
            new = self.teacher(u).softmax(dim=1) if cfg.ensemble_of == "teacher" else probs_u.detach()
            self.ensemble[idx] = cfg.alpha * self.ensemble[idx] + (1 - cfg.alpha) * new.float()
            self.updates[idx] = t + 1
        loss_x = F.cross_entropy(logits_x, batch.y)
        loss_u = ((probs_u - target).pow(2).mean(dim=1) * seen).mean()
        wu = cfg.wu * linear_rampup(progress, cfg.warmup)
        loss = loss_x + wu * loss_u
        return loss, {"loss/x": loss_x.detach(), "loss/u": loss_u.detach(), "monitor/seen": seen.mean()}
