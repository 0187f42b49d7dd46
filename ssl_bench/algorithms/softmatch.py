"""SoftMatch: every pseudo-label weighted by a truncated Gaussian of its confidence (Chen et al., arXiv 2301.10921).

Default: TorchSSL ``models/softmatch``, the code of the paper's image tables (the authors in USB #89), per
docs/algorithms/softmatch.md#reference-step: the mean and variance (unbiased) of the weak confidence, the EMA p_model of
weak predictions and the EMA p_target of *labeled* predictions all start at 1/C (variance 1) and are updated with this
step's predictions before they are read; μ and σ² are taken from the unaligned predictions; the aligned prediction
q̃ = Normalize(q · p_target / p_model) gives the weight w = exp(−min(max q̃ − μ, 0)² / (2σ² / n_sigma²)), 1 above
the mean; the hard pseudo-label is the argmax of the unaligned q; the loss is the w-weighted cross-entropy over the
whole unlabeled batch.

``variant = "usb"`` is USB's order (docs/algorithms/softmatch.md#usb-order): alignment first, to a uniform target, with
p_model set to the first batch's mean and 1e-6 added to both distributions, and μ, σ² taken from the *aligned*
predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig, DataInfo
from ssl_bench.algorithms.functional import joint_pass
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class SoftMatchConfig(AlgorithmConfig):
    """Defaults: TorchSSL softmatch configs (docs/algorithms/softmatch.md#hyper-parameters)."""

    name: str = "softmatch"
    uratio: Annotated[int, Range("[1, inf)")] = 7  # μ
    wu: Annotated[float, Range("[0, inf)")] = 1.0  # λ_u (λ_max of the paper)
    ema_p: Annotated[float, Range("[0, 1)")] = 0.999  # m, the momentum of μ, σ², p_model and p_target
    n_sigma: Annotated[float, Range("(0, inf)")] = 2.0  # the Gaussian's standard deviation is σ / n_sigma
    dist_align: bool = True  # uniform alignment of the weights' predictions
    # the order of the statistics and the alignment (docs/algorithms/softmatch.md#reference-step to
    # docs/algorithms/softmatch.md#usb-order)
    variant: Literal["torchssl", "usb"] = "torchssl"


@ALGORITHMS.register("softmatch")
class SoftMatch(Algorithm):
    Config = SoftMatchConfig
    cfg: SoftMatchConfig
    # buffers, registered in __init__ (nn.Module's __getattr__ types them only as Tensor | Module)
    mu: torch.Tensor
    var: torch.Tensor
    p_model: torch.Tensor
    p_target: torch.Tensor
    started: torch.Tensor
    data_parallel = True  # per-image terms; the statistics are taken over the global batch (Ranks.cat)

    def __init__(self, model: nn.Module, cfg: SoftMatchConfig, num_classes: int, data: DataInfo | None = None) -> None:
        super().__init__(model, cfg, num_classes, data)
        self.register_buffer("mu", torch.tensor(1.0 / num_classes))
        self.register_buffer("var", torch.tensor(1.0))
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("p_target", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("started", torch.tensor(False))  # usb: p_model is the first batch's mean

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak", "strong"), uratio=self.cfg.uratio)

    @torch.no_grad()
    def fit_gaussian(self, probs: torch.Tensor) -> None:
        conf = probs.max(dim=1).values
        m = self.cfg.ema_p
        self.mu.mul_(m).add_((1 - m) * conf.mean())
        self.var.mul_(m).add_((1 - m) * conf.var(unbiased=True))

    @torch.no_grad()
    def weights(self, probs_x: torch.Tensor, probs_u: torch.Tensor) -> torch.Tensor:
        """Update the statistics with the global batch's predictions, then weigh each unlabeled image."""
        cfg, m = self.cfg, self.cfg.ema_p
        all_u, all_x = self.ranks.cat(probs_u), self.ranks.cat(probs_x)
        if cfg.variant == "torchssl":
            self.p_model.mul_(m).add_((1 - m) * all_u.mean(dim=0))
            self.p_target.mul_(m).add_((1 - m) * all_x.mean(dim=0))  # an EMA of labeled predictions
            self.fit_gaussian(all_u)  # on the unaligned predictions
            aligned = probs_u * self.p_target / self.p_model if cfg.dist_align else probs_u
        else:
            self.p_model.copy_(torch.where(self.started, m * self.p_model + (1 - m) * all_u.mean(0), all_u.mean(0)))
            self.started.fill_(True)
            uniform = 1.0 / self.num_classes + 1e-6

            def align(p: torch.Tensor) -> torch.Tensor:
                q = p * uniform / (self.p_model + 1e-6) if cfg.dist_align else p
                return q / q.sum(dim=1, keepdim=True)

            self.fit_gaussian(align(all_u))  # on the aligned predictions
            aligned = probs_u * uniform / (self.p_model + 1e-6) if cfg.dist_align else probs_u
        aligned = aligned / aligned.sum(dim=1, keepdim=True)
        below = (aligned.max(dim=1).values - self.mu).clamp(max=0.0)
        return torch.exp(-below.pow(2) / (2 * self.var / cfg.n_sigma**2))

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        x, (u_weak, u_strong) = batch.x[0], batch.u
        logits_x, logits_weak, logits_strong = joint_pass(self.model, x, u_weak, u_strong)
        loss_x = F.cross_entropy(logits_x, batch.y)
        probs_u = logits_weak.detach().float().softmax(dim=1)
        w = self.weights(logits_x.detach().float().softmax(dim=1), probs_u)
        pseudo = probs_u.argmax(dim=1)  # from the unaligned prediction, in both code bases
        loss_u = (F.cross_entropy(logits_strong, pseudo, reduction="none") * w).mean()
        loss = loss_x + self.cfg.wu * loss_u
        return loss, {
            "loss/x": loss_x.detach(),
            "loss/u": loss_u.detach(),
            "monitor/weight": w.mean(),
            "monitor/mu": self.mu.clone(),
            "monitor/var": self.var.clone(),
        }
