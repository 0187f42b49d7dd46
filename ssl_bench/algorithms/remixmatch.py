"""ReMixMatch: distribution alignment and augmentation anchoring on MixMatch (Berthelot et al., arXiv 1911.09785).

Behaviour of google-research/remixmatch ``remixmatch_no_cta.py`` (headline variant: guess from the weak copy,
distribution alignment, cross-entropy) as in docs/algorithms/remixmatch.md: rotation loss on strong copy 1, guess
and pre-mixup passes in training mode with their BN updates discarded, alignment read from earlier steps and
updated with unaligned predictions, mixup over labeled + K + 1 unlabeled copies, K + 2 interleaved passes keeping
the BN update of the last, ramped λ_U and λ_Û1, unramped λ_r. Labeled images come strongly augmented.
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
    frozen_bn_stats,
    interleave,
    linear_rampup,
    mixup,
    sample_mixup,
    sharpen,
    soft_cross_entropy,
)
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.models.backbone import Backbone
from ssl_bench.models.wrn import init_weights
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class ReMixMatchConfig(AlgorithmConfig):
    """Defaults: CIFAR-10 250/1000/4000 runs of google-research/remixmatch
    (docs/algorithms/remixmatch.md#hyper-parameters)."""

    name: str = "remixmatch"
    K: Annotated[int, Range("[1, inf)")] = 8  # strong copies per unlabeled image (1 at 40 labels, 4 for STL-10)
    T: Annotated[float, Range("(0, inf)")] = 0.5
    alpha: Annotated[float, Range("(0, inf)")] = 0.75
    w_match: Annotated[float, Range("[0, inf)")] = 1.5  # λ_U
    w_kl: Annotated[float, Range("[0, inf)")] = 0.5  # λ_Û1, the pre-mixup loss
    w_rot: Annotated[float, Range("[0, inf)")] = 0.5  # λ_r (2 for CIFAR-10@40, 3 for SVHN@40); not ramped
    rampup: Annotated[float, Range("[0, 1]")] = 1 / 64  # warmup_kimg 1,024 of 65,536 (8,192 for CIFAR-10@40 = 1/8)
    # p_model FIFO length (docs/reference/common.md#distribution-estimates)
    dbuf: Annotated[int, Range("[1, inf)")] = 128
    # p_data EMA of labeled one-hots (docs/reference/common.md#distribution-estimates)
    p_data_decay: Annotated[float, Range("[0, 1)")] = 0.999


def rotate_quarters(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate the 1st quarter by 0°, the 2nd by 180°, the 3rd by 90° and the 4th by 270°; labels 0, 1, 2, 3."""
    n = len(images)
    labels = torch.div(torch.arange(n, device=images.device) * 4, n, rounding_mode="floor")
    turns = labels + (labels == 1).long() - (labels == 2).long()  # quarters 0, 1, 2, 3 -> 0, 2, 1, 3 turns
    out = images
    for k in (1, 2, 3):  # every turn of the whole batch, picked per sample: no boolean indexing, no host read
        out = torch.where((turns == k).view(-1, 1, 1, 1), torch.rot90(images, k, dims=(2, 3)), out)
    return out, labels


@ALGORITHMS.register("remixmatch")
class ReMixMatch(Algorithm):
    Config = ReMixMatchConfig
    cfg: ReMixMatchConfig
    model: Backbone  # the rotation head reads its pooled features
    not_split_because = "its MixUp partners and interleaved BatchNorm passes span the whole batch"
    # ssda would append labeled target images to x: the interleaved passes need x and u groups of one size
    settings = ("ssl", "uda")

    def __init__(self, model: Backbone, cfg: ReMixMatchConfig, num_classes: int, data: DataInfo | None = None) -> None:
        super().__init__(model, cfg, num_classes, data)
        # dense 128 -> 4 on the pooled embedding, Glorot-normal kernel and zero bias like the classifier
        # (docs/reference/common.md#wrn-28-k;
        # remixmatch_no_cta.py classifier_rot: tf.layers.dense with glorot_normal_initializer)
        self.rot_head = nn.Linear(model.embed_dim, 4)
        init_weights(self.rot_head)
        self.p_model = FIFOMean(num_classes, cfg.dbuf)
        self.p_data = EMAVector(num_classes, cfg.p_data_decay)

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("strong",), unlabeled=("weak",) + ("strong",) * self.cfg.K, uratio=1)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg, x, u = self.cfg, batch.x[0], batch.u
        b = len(x)
        metrics: dict[str, torch.Tensor | float] = {}
        loss_rot = x.new_zeros(())
        with frozen_bn_stats(self.model):
            if cfg.w_rot > 0:
                rotated, rot_labels = rotate_quarters(u[1])
                loss_rot = F.cross_entropy(self.rot_head(self.model.embed(rotated)), rot_labels)
            with torch.no_grad():
                probs_u = self.model(u[0]).softmax(dim=1)
            logits_u1 = self.model(u[1])
        q = sharpen(align(probs_u, self.p_data.value(), self.p_model.value()), cfg.T)
        loss_pre = soft_cross_entropy(logits_u1, q)
        inputs = torch.cat([x, *u])
        targets = torch.cat([F.one_hot(batch.y, self.num_classes).float(), *([q] * len(u))])
        lam, perm = sample_mixup(len(inputs), cfg.alpha, x.device)
        mixed, mixed_targets = mixup(inputs, targets, lam, perm)
        groups = interleave(list(mixed.split(b)), b)
        with frozen_bn_stats(self.model):
            logits = [self.model(g) for g in groups[:-1]]
        # only the last pass updates the BN statistics (docs/reference/common.md#interleave-and-batchnorm)
        logits.append(self.model(groups[-1]))
        logits = interleave(logits, b)
        loss_x = soft_cross_entropy(logits[0], mixed_targets[:b])
        loss_u = soft_cross_entropy(torch.cat(logits[1:]), mixed_targets[b:])
        ramp = linear_rampup(progress, cfg.rampup)
        loss = loss_x + cfg.w_kl * ramp * loss_pre + cfg.w_match * ramp * loss_u + cfg.w_rot * loss_rot
        self.p_model.push(probs_u.mean(dim=0))  # unaligned predictions; read again only at the next step
        self.p_data.update(F.one_hot(batch.y, self.num_classes).float().mean(dim=0))
        metrics.update(
            {
                "loss/x": loss_x.detach(),
                "loss/u": loss_u.detach(),
                "loss/pre": loss_pre.detach(),
                "loss/rot": loss_rot.detach(),
                "monitor/ramp": ramp,
            }
        )
        return loss, metrics
