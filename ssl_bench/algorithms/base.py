"""The algorithm interface: an nn.Module that declares its views and turns one batch into a loss (design.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ssl_bench.augment.views import Batch, ViewSpec


@dataclass(frozen=True)
class AlgorithmConfig:
    """Base of every algorithm's config; subclasses add hyper-parameters, each default citing its source, and
    ``limits``: the interval each numeric hyper-parameter must lie in, e.g. ``{"T": "(0, inf)", "tau": "[0, 1]"}``,
    checked when a recipe is read (``values.check_limits``)."""

    name: str = ""
    limits: ClassVar[dict[str, str]] = {}


class Algorithm(nn.Module):
    """Holds the backbone (``self.model``) and its frozen config; does no optimizer, device, logging or data work.

    Subclasses set ``Config`` and implement ``views`` and ``step``. Running state (e.g. distribution-alignment
    averages) must be registered buffers so that checkpoints need no special cases.
    """

    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    # ssda: True = labeled target images arrive apart in batch.x_target / y_target; False = appended to x / y
    separate_target_labels: ClassVar[bool] = False
    # settings the step is written for (data.setting); the runner refuses the others before training
    settings: ClassVar[tuple[str, ...]] = ("ssl", "uda", "ssda")
    # True = the step may run split across processes (train/distributed.py): every loss is a mean of per-image
    # terms and nothing but BatchNorm reads statistics of the whole batch. False refuses, naming ``not_split_because``.
    data_parallel: ClassVar[bool] = False
    not_split_because: ClassVar[str] = "it does not declare that its step splits across processes (data_parallel)"

    def __init__(self, model: nn.Module, cfg: AlgorithmConfig, num_classes: int) -> None:
        super().__init__()
        self.model, self.cfg, self.num_classes = model, cfg, num_classes

    def views(self) -> ViewSpec:
        raise NotImplementedError

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Loss of one step and named metrics (``loss/x``, ``loss/u``, ``monitor/mask``...); progress in [0, 1)."""
        raise NotImplementedError
