"""FixMatch: confident pseudo-labels from weak views supervise strong views (Sohn et al., arXiv 2001.07685).

Behaviour of google-research/fixmatch ``fixmatch.py`` as in docs/algorithms/fixmatch.md: one training-mode pass
over concat(labeled, unlabeled weak, unlabeled strong), hard pseudo-labels at τ = 0.95, the masked loss divided
by the whole unlabeled batch, no ramp-up, no sharpening, no distribution alignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.algorithms.functional import confidence_mask, joint_pass, masked_cross_entropy
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class FixMatchConfig(AlgorithmConfig):
    """Defaults are the fixmatch repo's flags used for every dataset (docs/algorithms/fixmatch.md#hyper-parameters)."""

    name: str = "fixmatch"
    uratio: Annotated[int, Range("[1, inf)")] = 7  # μ: unlabeled images per labeled image (flag uratio)
    threshold: Annotated[float, Range("[0, 1]")] = 0.95  # τ (flag confidence)
    wu: Annotated[float, Range("[0, inf)")] = 1.0  # λ_u (flag wu), no ramp-up


@ALGORITHMS.register("fixmatch")
class FixMatch(Algorithm):
    Config = FixMatchConfig
    cfg: FixMatchConfig
    data_parallel = True  # per-image loss terms, means over the batch (train/distributed.py)

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak", "strong"), uratio=self.cfg.uratio)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        x, (u_weak, u_strong) = batch.x[0], batch.u
        logits_x, logits_u_weak, logits_u_strong = joint_pass(self.model, x, u_weak, u_strong)  # all 2μB + B images
        loss_x = F.cross_entropy(logits_x, batch.y)
        probs_u = logits_u_weak.detach().softmax(dim=1)
        pseudo, mask = confidence_mask(probs_u, self.cfg.threshold)
        loss_u = masked_cross_entropy(logits_u_strong, pseudo, mask)
        loss = loss_x + self.cfg.wu * loss_u
        return loss, {"loss/x": loss_x.detach(), "loss/u": loss_u.detach(), "monitor/mask": mask.mean()}
