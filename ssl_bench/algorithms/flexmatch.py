"""FlexMatch: FixMatch with a threshold per class that follows how far each class has been learned (Zhang et al.,
arXiv 2110.08263, curriculum pseudo labeling).

Behaviour of TorchSSL ``models/flexmatch`` (the code of the paper's tables), per docs/algorithms/flexmatch.md: one
unlabeled image has one "selected label" for the whole run (−1 until its weak confidence first reaches the fixed
τ = 0.95, then its latest such prediction, never reset); at the start of each step the learning effect of class c
is β_c = σ_c / max(σ_−1, max σ) from those selections (σ_−1: pool images never selected, the warm-up), read
*before* this step's selections are written, so the first steps have every β and every threshold at 0 and every
unlabeled image gets a hard pseudo-label. The threshold of class c is τ · M(β_c) with the convex M(x) = x / (2 − x);
the mask is ``max p >= τ · M(β_ŷ)``; the loss is FixMatch's, averaged over the whole unlabeled batch.

The per-image state is a buffer over training-set positions (``batch.idx_u``), counted on the device with
``count_values`` (an ``index_add_`` off the CPU) instead of the reference's Python Counter of every label at every
step (docs/algorithms/flexmatch.md#counting-on-the-device, same values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig, DataInfo
from ssl_bench.algorithms.functional import joint_pass
from ssl_bench.augment.host_reads import count_values
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.errors import ConfigError
from ssl_bench.registry import ALGORITHMS

MAPPINGS = {  # threshold / τ as a function of β: the convex default and the alternatives in the reference's comments
    "convex": lambda b: b / (2.0 - b),
    "linear": lambda b: (b + 1.0) / 2.0,
    "low_limit": lambda b: 1.0 / (2.0 - b),
    "concave": lambda b: (torch.log(b + 1.0) + 0.5) / (math.log(2.0) + 0.5),
}


@dataclass(frozen=True)
class FlexMatchConfig(AlgorithmConfig):
    """Defaults: TorchSSL flexmatch configs, identical for CIFAR-10/100, SVHN and STL-10 (docs/reference/common.md
    docs/algorithms/flexmatch.md#hyper-parameters)."""

    name: str = "flexmatch"
    uratio: Annotated[int, Range("[1, inf)")] = 7  # μ
    threshold: Annotated[float, Range("[0, 1]")] = 0.95  # τ (p_cutoff)
    wu: Annotated[float, Range("[0, inf)")] = 1.0  # λ_u (ulb_loss_ratio)
    thresh_warmup: bool = True  # the never-selected images count as a class in the normaliser of β (warm-up)
    mapping: Literal["convex", "linear", "low_limit", "concave"] = "convex"  # M(β), flexmatch_utils.py
    hard_label: bool = True  # False: soft targets softmax(z_weak / T)
    T: Annotated[float, Range("(0, inf)")] = 0.5  # used only with hard_label = false


@ALGORITHMS.register("flexmatch")
class FlexMatch(Algorithm):
    Config = FlexMatchConfig
    cfg: FlexMatchConfig
    # buffers, registered in __init__ (nn.Module's __getattr__ types them only as Tensor | Module)
    selected_label: torch.Tensor
    classwise_acc: torch.Tensor
    data_parallel = True  # per-image terms; every rank applies the whole global batch's selections

    def __init__(self, model: nn.Module, cfg: FlexMatchConfig, num_classes: int, data: DataInfo | None = None) -> None:
        super().__init__(model, cfg, num_classes, data)
        if self.data.n_train <= 0:
            raise ConfigError("flexmatch keeps one selected label per training image: build it with build_run's data")
        self.register_buffer("selected_label", torch.full((self.data.n_train,), -1, dtype=torch.long))
        self.register_buffer("classwise_acc", torch.zeros(num_classes))  # β, kept when no update applies

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak", "strong"), uratio=self.cfg.uratio)

    @torch.no_grad()
    def learning_effect(self) -> torch.Tensor:
        """β from the selections of the previous steps, as TorchSSL updates it at the start of a step."""
        counts = count_values(self.selected_label + 1, self.num_classes + 1)[1:].float()  # key −1 dropped
        unused = self.data.n_unlabeled - counts.sum()  # pool images never selected (the reference's key −1)
        top = torch.maximum(unused, counts.max()) if self.cfg.thresh_warmup else counts.max()
        update = torch.maximum(unused, counts.max()) < self.data.n_unlabeled  # at least one image selected
        self.classwise_acc.copy_(torch.where(update, counts / top.clamp_min(1.0), self.classwise_acc))
        return self.classwise_acc

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg = self.cfg
        if batch.idx_u is None:
            raise RuntimeError("flexmatch keeps one selected label per training image: its batches need idx_u")
        # read before this step's selections are written (docs/reference/common.md#statistic-update-order)
        beta = self.learning_effect()
        x, (u_weak, u_strong) = batch.x[0], batch.u
        logits_x, logits_weak, logits_strong = joint_pass(self.model, x, u_weak, u_strong)
        loss_x = F.cross_entropy(logits_x, batch.y)
        with torch.no_grad():
            conf, pseudo = logits_weak.softmax(dim=1).max(dim=1)
            mask = (conf >= cfg.threshold * MAPPINGS[cfg.mapping](beta[pseudo])).float()
            selected = conf >= cfg.threshold  # the fixed τ decides what counts as learned
            idx, pseudo_all, sel_all = (self.ranks.cat(t) for t in (batch.idx_u, pseudo, selected))
            self.selected_label[idx] = torch.where(sel_all, pseudo_all, self.selected_label[idx])
        if cfg.hard_label:
            loss_u = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
        else:
            target = (logits_weak.detach() / cfg.T).softmax(dim=1)
            loss_u = (-(target * logits_strong.log_softmax(dim=1)).sum(dim=1) * mask).mean()
        loss = loss_x + cfg.wu * loss_u
        return loss, {
            "loss/x": loss_x.detach(),
            "loss/u": loss_u.detach(),
            "monitor/mask": mask.mean(),
            "monitor/selected": (self.selected_label >= 0).float().sum() / max(self.data.n_unlabeled, 1),
            "monitor/threshold": (cfg.threshold * MAPPINGS[cfg.mapping](beta)).mean(),
        }
