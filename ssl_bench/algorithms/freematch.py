"""FreeMatch: self-adaptive thresholds and a fairness term (Wang et al., arXiv 2205.07246).

Behaviour of TorchSSL ``models/freematch_entropy`` at 03193a1 (the code behind the paper's tables), per
docs/algorithms/freematch.md: the global threshold τ (EMA of the mean weak confidence), the class-wise mean
prediction p̃ and the histogram h̃ of weak argmaxes start uniform (1/C) and are updated with this step's weak
predictions *before* they are read; the threshold of class c is τ · p̃_c / max p̃ (``>=``); the loss is FixMatch's
over the whole unlabeled batch, plus λ_f times the self-adaptive fairness term over the selected images only:
L_f = Σ_c a_c log(b_c + 1e-12) with a = Normalize(p̃ / h̃) and b = Normalize(mean_S softmax(z_s) / h_S), where
h_S is the histogram of the strong argmaxes over S and 1/0 counts as 0. The gradient reaches the strong
predictions only.

Deviation, named: with no selected image the reference divides 0 by 0 and its loss is NaN; here L_f is 0 then.
``clip`` reaches the two SVHN variants (docs/algorithms/freematch.md#torchssl-versus-usb): "usb" clamps the global τ to
[0, 0.95] (USB's clip_thresh), "torchssl" clamps every class threshold to [0.9, 0.95] (TorchSSL b45c3b3, after the
paper's runs).
"""

from __future__ import annotations

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
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class FreeMatchConfig(AlgorithmConfig):
    """Defaults: TorchSSL freematch_entropy configs (docs/algorithms/freematch.md#hyper-parameters)."""

    name: str = "freematch"
    uratio: Annotated[int, Range("[1, inf)")] = 7  # μ
    wu: Annotated[float, Range("[0, inf)")] = 1.0  # λ_u
    wf: Annotated[float, Range("[0, inf)")] = 0.01  # λ_f (ent_loss_ratio of the TorchSSL configs; USB's configs: 0.001)
    ema_p: Annotated[float, Range("[0, 1)")] = 0.999  # m, the momentum of τ, p̃ and h̃
    clip: Literal["none", "usb", "torchssl"] = "none"  # the SVHN threshold clamps of the two code bases


def inverse(h: torch.Tensor) -> torch.Tensor:
    """1 / h with 1/0 read as 0 (the reference's replace_inf_to_zero)."""
    return torch.where(h > 0, 1.0 / h, torch.zeros_like(h))


def fairness(probs_strong: torch.Tensor, mask: torch.Tensor, p_model: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
    """The self-adaptive fairness term over the images with ``mask`` 1 (docs/algorithms/freematch.md#reference-step); 0
    when there are none."""
    n, c = mask.sum(), probs_strong.shape[1]
    pred_s = torch.where(mask > 0, probs_strong.detach().argmax(dim=1), c)  # unselected images counted as class c
    hist_s = count_values(pred_s, c + 1)[:c].float() / n.clamp_min(1.0)
    a = p_model * inverse(hist)
    a = a / a.sum()
    b = (mask[:, None] * probs_strong).sum(dim=0) / n.clamp_min(1.0) * inverse(hist_s)
    b = b / b.sum().clamp_min(torch.finfo(b.dtype).tiny)  # finite with no selected image: the where below drops it
    return torch.where(n > 0, (a * torch.log(b + 1e-12)).sum(), torch.zeros_like(n))


@ALGORITHMS.register("freematch")
class FreeMatch(Algorithm):
    Config = FreeMatchConfig
    cfg: FreeMatchConfig
    # buffers, registered in __init__ (nn.Module's __getattr__ types them only as Tensor | Module)
    time_p: torch.Tensor
    p_model: torch.Tensor
    label_hist: torch.Tensor
    not_split_because = (
        "its fairness term is a non-linear function of the mean prediction over the selected images of the whole "
        "batch, which per-rank gradients cannot add up to"
    )

    def __init__(self, model: nn.Module, cfg: FreeMatchConfig, num_classes: int, data: DataInfo | None = None) -> None:
        super().__init__(model, cfg, num_classes, data)
        self.register_buffer("time_p", torch.tensor(1.0 / num_classes))  # τ
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))  # p̃
        self.register_buffer("label_hist", torch.full((num_classes,), 1.0 / num_classes))  # h̃

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak", "strong"), uratio=self.cfg.uratio)

    @torch.no_grad()
    def update(self, probs: torch.Tensor) -> None:
        """τ, p̃ and h̃ from this step's weak predictions (update, then read:
        docs/reference/common.md#statistic-update-order)."""
        m, c = self.cfg.ema_p, self.num_classes
        conf, pred = probs.max(dim=1)
        self.time_p.mul_(m).add_((1 - m) * conf.mean())
        if self.cfg.clip == "usb":
            self.time_p.clamp_(0.0, 0.95)
        self.p_model.mul_(m).add_((1 - m) * probs.mean(dim=0))
        self.label_hist.mul_(m).add_((1 - m) * count_values(pred, c).float() / len(pred))

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg = self.cfg
        x, (u_weak, u_strong) = batch.x[0], batch.u
        logits_x, logits_weak, logits_strong = joint_pass(self.model, x, u_weak, u_strong)
        loss_x = F.cross_entropy(logits_x, batch.y)
        with torch.no_grad():
            probs = logits_weak.float().softmax(dim=1)
            self.update(probs)
            conf, pseudo = probs.max(dim=1)
            thresholds = self.time_p * self.p_model / self.p_model.max()
            if cfg.clip == "torchssl":
                thresholds = thresholds.clamp(0.9, 0.95)
            mask = (conf >= thresholds[pseudo]).float()
        loss_u = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
        loss_f = fairness(logits_strong.float().softmax(dim=1), mask, self.p_model, self.label_hist)
        loss = loss_x + cfg.wu * loss_u + cfg.wf * loss_f
        return loss, {
            "loss/x": loss_x.detach(),
            "loss/u": loss_u.detach(),
            "loss/fairness": loss_f.detach(),
            "monitor/mask": mask.mean(),
            "monitor/threshold": self.time_p.clone(),
        }
