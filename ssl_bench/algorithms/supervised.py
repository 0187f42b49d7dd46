"""Supervised baseline: cross-entropy on the labeled images only (the lower bound every SSL method must beat)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.augment.views import Batch, Role, ViewSpec
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class SupervisedConfig(AlgorithmConfig):
    """No loss hyper-parameters: optimizer and schedule come from [train] (reference
    docs/reference/common.md#optimisers-and-weight-decay, fixmatch repo)."""

    name: str = "supervised"
    # augmentation role of the labeled images: weak, strong (augment.strong picks the policy) or none
    view: Role = "weak"


@ALGORITHMS.register("supervised")
class Supervised(Algorithm):
    Config = SupervisedConfig
    cfg: SupervisedConfig
    data_parallel = True  # per-image loss terms, means over the batch (train/distributed.py)

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=(self.cfg.view,))

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        logits_x = self.model(batch.x[0])
        loss_x = F.cross_entropy(logits_x, batch.y)
        acc = (logits_x.argmax(1) == batch.y).float().mean()
        return loss_x, {"loss/x": loss_x.detach(), "acc/train": acc.detach()}
