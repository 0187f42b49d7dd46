"""The algorithm interface: an nn.Module that declares its views and turns one batch into a loss (design.md)."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.errors import ConfigError

_INTERVAL = re.compile(r"^([\[(])\s*(-inf|-?[0-9.]+)\s*,\s*(inf|-?[0-9.]+)\s*([\])])$")


@dataclass(frozen=True)
class AlgorithmConfig:
    """Base of every algorithm's config; subclasses add hyper-parameters, each default citing its source, and
    ``limits``: the interval each numeric hyper-parameter must lie in, e.g. ``{"T": "(0, inf)", "tau": "[0, 1]"}``,
    checked when a recipe is read (``check_limits``)."""

    name: str = ""
    limits: ClassVar[dict[str, str]] = {}


def check_limits(cfg: AlgorithmConfig) -> None:
    """Every hyper-parameter named in ``cfg.limits`` lies in its interval, else a one-line ConfigError."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, interval in cfg.limits.items():
        m = _INTERVAL.match(interval)
        value = getattr(cfg, key, None)
        if m is None or key not in names or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{type(cfg).__name__}.limits[{key!r}] = {interval!r}: not a numeric field and an interval")
        lo_open, lo, hi, hi_open = m[1] == "(", float(m[2]), float(m[3]), m[4] == ")"
        inside = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
        if not inside:
            if math.isinf(hi):
                need = f"be {'>' if lo_open else '>='} {m[2]}"
            else:
                need = f"lie in {interval}"
            raise ConfigError(f"algorithm.{key} of {cfg.name} must {need}, got {value}")


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
