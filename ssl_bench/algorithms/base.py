"""The algorithm interface: an nn.Module that declares its views and turns one batch into a loss (design.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ssl_bench.augment.views import Batch, ViewSpec


@dataclass(frozen=True)
class AlgorithmConfig:
    """Base of every algorithm's config; subclasses add hyper-parameters, each default citing its source."""

    name: str = ""


class Algorithm(nn.Module):
    """Holds the backbone (``self.model``) and its frozen config; does no optimizer, device, logging or data work.

    Subclasses set ``Config`` and implement ``views`` and ``step``. Running state (e.g. distribution-alignment
    averages) must be registered buffers so that checkpoints need no special cases.
    """

    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig

    def __init__(self, model: nn.Module, cfg: AlgorithmConfig, num_classes: int) -> None:
        super().__init__()
        self.model, self.cfg, self.num_classes = model, cfg, num_classes

    def views(self) -> ViewSpec:
        raise NotImplementedError

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Loss of one step and named metrics (``loss/x``, ``loss/u``, ``monitor/mask``...); progress in [0, 1)."""
        raise NotImplementedError
