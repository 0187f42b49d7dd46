"""AdaMatch: random logit interpolation, relative threshold and distribution alignment (arXiv 2106.04732).

Behaviour of google-research/adamatch (objax) as in docs/algorithms/adamatch.md#reference-step: a source-only pass whose
BN update is undone, a joint pass whose update is kept, per-logit random interpolation between them, c_τ = τ · mean max
p(weak source), alignment p(labeled) / p(unlabeled) updated then read, labeled loss over weak and strong views,
half-cosine warm-up. UDA: labeled = source, unlabeled = target; SSL: the labeled set plays the source. SSDA
(docs/algorithms/adamatch.md#reference-step, "SSDA additions"): the labeled target batch joins both passes, its logits
are interpolated too and add L_t = ½[CE(weak) + CE(strong)]; c_τ and p(labeled) still come from the weak source logits
only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig, DataInfo
from ssl_bench.algorithms.functional import (
    EMAVector,
    FIFOMean,
    align,
    confidence_mask,
    frozen_bn_stats,
    half_cosine_warmup,
    masked_cross_entropy,
    relative_threshold,
)
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class AdaMatchConfig(AlgorithmConfig):
    """Defaults: the adamatch repo's flags, identical across UDA, SSDA and SSL
    (docs/algorithms/adamatch.md#hyper-parameters)."""

    name: str = "adamatch"
    uratio: Annotated[int, Range("[1, inf)")] = 3  # unlabeled (target) images per labeled (source) image
    tau: Annotated[float, Range("[0, 1]")] = 0.9  # relative confidence threshold
    wu: Annotated[float, Range("[0, inf)")] = 1.0  # final weight of the unlabeled loss (flag wu)
    # half-cosine 0 -> 1 over this fraction of training, then 1 -> wu over the rest
    warmup: Annotated[float, Range("[0, 1]")] = 0.5
    dbuf: Annotated[int, Range("[1, inf)")] = 128  # FIFO of p(unlabeled)
    p_labeled_decay: Annotated[float, Range("[0, 1)")] = 0.999  # EMA of p(labeled) from weak source predictions


@ALGORITHMS.register("adamatch")
class AdaMatch(Algorithm):
    Config = AdaMatchConfig
    cfg: AdaMatchConfig
    not_split_because = "its relative confidence threshold and distribution alignment are statistics of the whole batch"
    separate_target_labels = True

    def __init__(self, model: nn.Module, cfg: AdaMatchConfig, num_classes: int, data: DataInfo | None = None) -> None:
        super().__init__(model, cfg, num_classes, data)
        self.p_labeled = EMAVector(num_classes, cfg.p_labeled_decay)
        self.p_unlabeled = FIFOMean(num_classes, cfg.dbuf)

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak", "strong"), unlabeled=("weak", "strong"), uratio=self.cfg.uratio)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg = self.cfg
        (x_weak, x_strong), (u_weak, u_strong) = batch.x, batch.u
        ub = len(u_weak)
        labeled = [x_weak, x_strong, *batch.x_target]  # source weak, source strong[, target weak, target strong]
        sizes = [len(t) for t in labeled]
        x_all = torch.cat(labeled)
        with frozen_bn_stats(self.model):
            # source-only pass: its BN update is rolled back (docs/reference/common.md#interleave-and-batchnorm)
            logits_x_only = self.model(x_all)
        logits = self.model(torch.cat([x_all, u_weak, u_strong]))
        logits_x_joint, logits_u = logits[: len(x_all)], logits[len(x_all) :]
        mix = torch.rand_like(logits_x_joint)  # per sample and per class
        logits_x = logits_x_joint + mix * (logits_x_only - logits_x_joint)
        logits_x_weak, logits_x_strong, *logits_t = logits_x.split(sizes)
        logits_u_weak, logits_u_strong = logits_u.split(ub)
        with torch.no_grad():
            probs_x_weak = logits_x_weak.softmax(dim=1)
            threshold = relative_threshold(probs_x_weak, cfg.tau)
            p_labeled = self.p_labeled.update(probs_x_weak.mean(dim=0))
            probs_u = logits_u_weak.softmax(dim=1)
            self.p_unlabeled.push(probs_u.mean(dim=0))
            q = align(probs_u, p_labeled, self.p_unlabeled.value())
            pseudo, mask = confidence_mask(q, threshold)
        loss_x = 0.5 * (F.cross_entropy(logits_x_weak, batch.y) + F.cross_entropy(logits_x_strong, batch.y))
        loss_u = masked_cross_entropy(logits_u_strong, pseudo, mask)
        wu = half_cosine_warmup(progress, cfg.warmup, cfg.wu)
        loss = loss_x + wu * loss_u
        metrics: dict[str, torch.Tensor | float] = {}
        if logits_t:  # ssda: labeled target images, weak and strong
            y_t = batch.y_target
            assert y_t is not None  # a batch holds the labeled target images with their labels (views.ViewBuilder)
            loss_t = 0.5 * (F.cross_entropy(logits_t[0], y_t) + F.cross_entropy(logits_t[1], y_t))
            loss = loss + loss_t
            metrics["loss/t"] = loss_t.detach()
        return loss, {
            "loss/x": loss_x.detach(),
            "loss/u": loss_u.detach(),
            "monitor/mask": mask.mean(),
            "monitor/threshold": threshold,
            "monitor/wu": wu,
            **metrics,
        }
