"""How the weights move: optimizers with weight decay on weights only, the LR schedules, and the EMA of the weights.

Conventions of docs/reference/common.md#optimisers-and-weight-decay (SGD-Nesterov with coupled L2 as in the fixmatch
repo, or Adam with decoupled decay as in the Gen-1 repos; decay on conv/linear weights only; cosine schedules) and
docs/reference/common.md#ema-model (EMA of the parameters from the initial weights, BN statistics copied or averaged).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from ssl_bench.config import TrainConfig


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate at 0-based ``step``: cosine lr*cos(7*pi*k/(16K)) of the fixmatch repo
    (docs/reference/common.md#optimisers-and-weight-decay), AdaMatch's cosine_quarter, or constant (Gen-1 Adam)."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr * math.cos(7 * math.pi * step / (16 * cfg.steps))
    # AdaMatch: lr*cos(arccos(0.25)*k/K), ends at lr/4 (docs/reference/common.md#optimisers-and-weight-decay)
    if cfg.lr_schedule == "cosine_quarter":
        return cfg.lr * math.cos(math.acos(0.25) * step / cfg.steps)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    raise ValueError(f"unknown schedule {cfg.lr_schedule!r}")  # TrainConfig.lr_schedule's Literal


def decay_split(module: nn.Module, scope: str = "weights") -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed): conv/linear weights and everything else
    (docs/reference/common.md#optimisers-and-weight-decay), or with ``scope = "all"`` every trainable parameter and
    nothing (the UDA authors' code, docs/algorithms/uda.md#hyper-parameters)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 or scope == "all" else no_decay).append(p)
    return decay, no_decay


def make_optimizer(cfg: TrainConfig, module: nn.Module) -> torch.optim.Optimizer:
    """sgd: Nesterov SGD with coupled L2 on weights (fixmatch repo); adam: Adam, decay applied after the step."""
    decay, no_decay = decay_split(module, cfg.decay_scope)
    if cfg.optimizer == "sgd":
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        groups = [{"params": decay, "decoupled": True}, {"params": no_decay, "decoupled": False}]
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=0.0)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")  # TrainConfig.optimizer's Literal


@torch.no_grad()
def decoupled_decay(cfg: TrainConfig, optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Gen-1 convention (docs/reference/common.md#optimisers-and-weight-decay): after the Adam step, every weight is
    multiplied by 1 - wd * lr."""
    if cfg.optimizer != "adam" or cfg.weight_decay == 0:
        return
    for group in optimizer.param_groups:
        if group.get("decoupled"):
            torch._foreach_mul_(group["params"], 1.0 - cfg.weight_decay * lr)


class EMA:
    """Exponential moving average of a model's parameters; buffers (BN statistics) are copied
    (docs/reference/common.md#ema-model, TF repos) or, with ``buffers="average"``, averaged like the parameters (objax,
    AdaMatch). The average starts from the initial weights (TF), not from zeros (objax).

    With ``warmup`` the decay is min(decay, (1 + k) / (10 + k)) at update k, so short runs do not evaluate a
    model still dominated by its random initialisation (a deviation from the reference, off by default).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool, buffers: str = "copy") -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup, self.buffers, self.updates = decay, warmup, buffers, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        ema_params: list[torch.Tensor] = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            if self.buffers == "average" and b.is_floating_point():
                b_ema.lerp_(b, 1.0 - decay)  # objax averages BN statistics too (docs/reference/common.md#ema-model)
            else:
                b_ema.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
