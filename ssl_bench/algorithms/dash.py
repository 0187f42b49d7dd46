"""Dash: unlabeled images selected by a loss threshold that shrinks over training (Xu et al., arXiv 2109.00650).

Default: the official TF code idstcv/Dash ``dash.py`` and ``cta/lib/train.py`` (a patch of google-research/fixmatch's
CTA FixMatch), per docs/algorithms/dash.md#reference-step. Training is divided into ``epochs`` = 1,024 "epochs" (the
code divides the images seen by train_kimg). During the first ``warmup_epochs`` the threshold ρ is 500, so every
unlabeled image is selected (FixMatch with soft targets and no threshold), and the per-image unlabeled losses are kept;
only those of the last warm-up epoch survive (the lists are cleared at the end of every earlier warm-up epoch). From
then on ρ = ρ̂ · γ^−⌊(t − 1) / drop_step⌋ at epoch t, where ρ̂ is the mean of the most recent (n_train − n_labeled) kept
losses; an image is selected where −log max softmax(z_weak) < max(ρ, ρ_min); the unlabeled loss is 0.9 × the sum of
the selected images' soft cross-entropies against softmax(z_weak / T), divided by the number selected, and once ρ
falls to ρ_min the targets become the hard argmax. Runs whose last warm-up epoch holds no step (under 1,024 steps)
keep the losses of the last warm-up step taken.

``variant = "usb"`` is the USB port (docs/algorithms/dash.md#usb-port): supervised-only warm-up over the first
``usb_warmup`` of training, then ρ = C · γ^−k · ρ_init with k counting periods of 10 epochs, selection where CE(target,
z_weak) <= ρ with the soft or hard target, and the masked loss averaged over the whole unlabeled batch. USB takes ρ_init
from the *test* loss of the initial weights, which no algorithm here can see: ``rho_init`` gives it (0 = ln C, the loss
of a uniform prediction).
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
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.config_checks import Range
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class DashConfig(AlgorithmConfig):
    """Defaults: the one released run, start_train.sh of idstcv/Dash (docs/algorithms/dash.md#released-flags); its lr
    0.06 and wd 5e-4 are [train] keys of the recipes."""

    name: str = "dash"
    uratio: Annotated[int, Range("[1, inf)")] = 7  # μ
    wu: Annotated[float, Range("[0, inf)")] = 1.0  # flag wu
    T: Annotated[float, Range("(0, inf)")] = 0.5  # flag temperature (flag default 1.0)
    gamma: Annotated[float, Range("(0, inf)")] = 1.27  # flag xeu_select_gamma (flag default 1.004)
    rho_min: Annotated[float, Range("[0, inf)")] = 0.05  # flag min_select_th
    drop_step: Annotated[int, Range("[1, inf)")] = 9  # flag drop_step (flag default 1)
    warmup_epochs: Annotated[int, Range("[0, inf)")] = 10  # flag dt_start_epoch (flag default 1)
    # "epochs" per run: the code's unit is train_kimg images, 1/1024 of training
    epochs: Annotated[int, Range("[1, inf)")] = 1024
    variant: Literal["official", "usb"] = "official"
    C: Annotated[float, Range("(0, inf)")] = 1.0001  # usb only
    usb_warmup: Annotated[float, Range("[0, 1)")] = 2048 / 2**20  # usb only: num_wu_iter of 2^20 iterations
    rho_init: Annotated[float, Range("[0, inf)")] = 0.0  # usb only; 0 = ln(number of classes)


@ALGORITHMS.register("dash")
class Dash(Algorithm):
    Config = DashConfig
    cfg: DashConfig
    # buffers, registered in __init__ (nn.Module's __getattr__ types them only as Tensor | Module)
    losses: torch.Tensor
    count: torch.Tensor
    epoch_kept: torch.Tensor
    data_parallel = True  # per-image terms; the selected count and the kept losses cover the global batch

    def __init__(self, model: nn.Module, cfg: DashConfig, num_classes: int, data: DataInfo | None = None) -> None:
        super().__init__(model, cfg, num_classes, data)
        keep = max(self.data.n_train - self.data.n_labeled, 1)  # total_train_num - labeled_num
        self.register_buffer("losses", torch.zeros(keep))  # the kept warm-up losses, a ring
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # losses written since the last clear
        self.register_buffer("epoch_kept", torch.full((), -1, dtype=torch.long))  # the epoch they come from

    def views(self) -> ViewSpec:
        return ViewSpec(labeled=("weak",), unlabeled=("weak", "strong"), uratio=self.cfg.uratio)

    @torch.no_grad()
    def keep(self, losses: torch.Tensor, epoch: int) -> None:
        """Append the step's unlabeled losses; losses of an earlier epoch but the last warm-up one are dropped."""
        stale = (self.epoch_kept < epoch) & (self.epoch_kept < self.cfg.warmup_epochs - 1)
        self.count.copy_(torch.where(stale, torch.zeros_like(self.count), self.count))
        losses = losses[-len(self.losses) :]
        pos = (self.count + torch.arange(len(losses), device=losses.device)) % len(self.losses)
        self.losses.index_copy_(0, pos, losses.float())
        self.count.add_(len(losses))
        self.epoch_kept.fill_(epoch)

    def rho_hat(self) -> torch.Tensor:
        """Mean of the most recent kept losses (0 if none was kept)."""
        n = self.count.clamp(max=len(self.losses))
        valid = torch.arange(len(self.losses), device=n.device) < n
        return (self.losses * valid).sum() / n.clamp_min(1)

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg = self.cfg
        x, (u_weak, u_strong) = batch.x[0], batch.u
        logits_x, logits_weak, logits_strong = joint_pass(self.model, x, u_weak, u_strong)
        loss_x = F.cross_entropy(logits_x, batch.y)
        weak = logits_weak.detach().float()
        soft, hard = (weak / cfg.T).softmax(dim=1), weak.argmax(dim=1)
        log_p_strong = logits_strong.log_softmax(dim=1)
        ce_soft, ce_hard = -(soft * log_p_strong).sum(dim=1), F.nll_loss(log_p_strong, hard, reduction="none")
        e = progress * cfg.epochs
        monitor_rho: torch.Tensor | float  # a tensor on the device (official) or the host's schedule (usb)
        monitor_hard: torch.Tensor | float
        if cfg.variant == "official":
            warm = e < cfg.warmup_epochs
            if warm:
                self.keep(self.ranks.cat(ce_soft.detach()), math.floor(e))
                rho = weak.new_full((), 500.0)  # a fill on the device, not a copy from the host
            else:
                drops = int((math.floor(e) - 1) / cfg.drop_step)  # tf.to_int32: truncated towards zero
                rho = self.rho_hat() * cfg.gamma**-drops
            use_hard = rho <= cfg.rho_min
            selected = (F.cross_entropy(weak, hard, reduction="none") < rho.clamp_min(cfg.rho_min)).float()
            n = self.ranks.sum(selected.sum())
            per_image = torch.where(use_hard, ce_hard, ce_soft)
            loss_u = 0.9 * (per_image * selected).sum() * self.ranks.world / n.clamp_min(1.0)  # divide_no_nan
            monitor_rho, monitor_hard = rho.detach().float(), use_hard.float()
        else:
            k = math.floor(max(progress - cfg.usb_warmup, 0.0) * cfg.epochs / 10)
            rho0 = cfg.rho_init or math.log(self.num_classes)
            rho_t = max(cfg.C * cfg.gamma**-k * rho0, cfg.rho_min)
            hard_now = rho_t == cfg.rho_min  # the schedule is known on the host: nothing to read from the device
            target = F.one_hot(hard, self.num_classes).float() if hard_now else soft
            selected = (-(target * weak.log_softmax(dim=1)).sum(dim=1) <= rho_t).float()
            selected = selected * float(progress >= cfg.usb_warmup)  # labeled images only during the warm-up
            loss_u = ((ce_hard if hard_now else ce_soft) * selected).mean()
            monitor_rho, monitor_hard = rho_t, float(hard_now)
        loss = loss_x + cfg.wu * loss_u
        return loss, {
            "loss/x": loss_x.detach(),
            "loss/u": loss_u.detach(),
            "monitor/mask": selected.mean(),
            "monitor/rho": monitor_rho,
            "monitor/hard": monitor_hard,
        }
