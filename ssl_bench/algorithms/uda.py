"""UDA: a strong view is pulled towards the sharpened prediction of a weak view (Xie et al., arXiv 1904.12848).

Default: google-research/fixmatch ``uda.py``, the UDA column of FixMatch's Table 2 (arXiv 2001.07685), per
docs/algorithms/uda.md#reference-step to docs/algorithms/uda.md#hyper-parameters (B): one training-mode pass over
labeled + weak + strong images (every BN update kept), the mask ``max softmax(z_weak) >= τ`` on the unsharpened weak
prediction, the target ``softmax(z_weak / T)`` with no gradient, KL(target ‖ softmax(z_strong)) averaged over the whole
unlabeled batch, an optional entropy term on the weak prediction, and training signal annealing (TSA) of the labeled
loss. The temperature is always applied (one popular port drops it, docs/algorithms/uda.md#ports). The UDA authors' own
repository (docs/algorithms/uda.md#hyper-parameters A) differs in settings only: ``threshold = 0.8``, ``strict = true``,
``T = 0.4``, ``tsa_end = 1``, with ``train.ema_decay = 0.9999``, ``train.decay_scope = "all"`` and
``model.bn_momentum = 0.1`` (recipes/cifar10/uda_authors.toml); its offline augmentation is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.algorithms.functional import joint_pass
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class UDAConfig(AlgorithmConfig):
    """Defaults: the flags of google-research/fixmatch uda.py (docs/algorithms/uda.md#hyper-parameters, column B)."""

    name: str = "uda"
    uratio: Annotated[int, Range("[1, inf)")] = 7  # flag uratio
    threshold: Annotated[float, Range("[0, 1]")] = 0.95  # flag confidence (β); the authors' repo: 0.8
    strict: bool = False  # mask max p > β (the authors' repo) instead of >= β (fixmatch repo)
    T: Annotated[float, Range("(0, inf)")] = 1.0  # flag temperature: target softmax(z_weak / T); the authors' repo: 0.4
    wu: Annotated[float, Range("[0, inf)")] = 1.0  # flag wu (λ_u)
    we: Annotated[float, Range("[0, inf)")] = 0.0  # flag we: entropy minimisation weight on the weak prediction
    tsa: Literal["no", "linear", "exp", "log"] = "no"  # flag tsa: training signal annealing of the labeled loss
    # fraction of training at which the TSA schedule reaches its end: (min(train_kimg, 2^14) << tsa_pos) images of
    # 2^26 = 2^22 / 2^26 = 1/16 with the flags' train_kimg 2^16 and tsa_pos 8; the authors' repo: 1 (t / T)
    tsa_end: Annotated[float, Range("(0, 1]")] = 1 / 16


def tsa_threshold(schedule: str, progress: float, end: float, num_classes: int) -> float:
    """η = α (1 − 1/C) + 1/C with α = min(f(progress / end), 1): f = r (linear), exp(5 (r − 1)), 1 − exp(−5 r)
    (log), or 1 for "no" (docs/algorithms/uda.md#reference-step)."""
    r = progress / end
    alpha = {"no": 1.0, "linear": r, "exp": math.exp(5 * (r - 1)), "log": 1 - math.exp(-5 * r)}[schedule]
    alpha = min(alpha, 1.0)
    return alpha * (1 - 1 / num_classes) + 1 / num_classes


@ALGORITHMS.register("uda")
class UDA(Algorithm):
    Config = UDAConfig
    cfg: UDAConfig
    data_parallel = True  # per-image terms; TSA's count of kept labeled images is summed over the ranks

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak", "strong"), uratio=self.cfg.uratio)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg = self.cfg
        x, (u_weak, u_strong) = batch.x[0], batch.u
        logits_x, logits_weak, logits_strong = joint_pass(self.model, x, u_weak, u_strong)
        with torch.no_grad():
            eta = tsa_threshold(cfg.tsa, progress, cfg.tsa_end, self.num_classes)
            p_correct = logits_x.softmax(dim=1).gather(1, batch.y[:, None]).squeeze(1)
            keep = (p_correct <= eta).float()  # TSA drops labeled images already predicted above η
            kept = self.ranks.sum(keep.sum()).clamp_min(1.0)
            conf = logits_weak.softmax(dim=1).max(dim=1).values
            mask = (conf > cfg.threshold if cfg.strict else conf >= cfg.threshold).float()
            log_target = (logits_weak / cfg.T).log_softmax(dim=1)
        loss_x = (F.cross_entropy(logits_x, batch.y, reduction="none") * keep).sum() * self.ranks.world / kept
        kl = (log_target.exp() * (log_target - logits_strong.log_softmax(dim=1))).sum(dim=1)
        loss_u = (kl * mask).mean()
        log_p = logits_weak.log_softmax(dim=1)
        loss_ent = -(log_p.exp() * log_p).sum(dim=1).mean()
        loss = loss_x + cfg.wu * loss_u + cfg.we * loss_ent
        return loss, {
            "loss/x": loss_x.detach(),
            "loss/u": loss_u.detach(),
            "loss/entropy": loss_ent.detach(),
            "monitor/mask": mask.mean(),
            "monitor/tsa_kept": keep.mean(),
        }
