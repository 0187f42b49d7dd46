"""The one training loop: optimizer, LR schedule, EMA, evaluation cadence, checkpoint/resume, progress.

Conventions follow reference-algorithms.md §1.1 (steps, evaluation every 64 kimg), §1.6 (optimizers and weight
decay on weights only), §1.7 (EMA of parameters, BN buffers copied) and §1.8 (median of the last k evaluations).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssl_bench.algorithms import Algorithm, get_algorithm
from ssl_bench.augment import ViewBuilder, create_policy
from ssl_bench.augment.views import to_input
from ssl_bench.config import RunConfig, TrainConfig
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.splits import DASplit, Split
from ssl_bench.data.streams import IndexStream
from ssl_bench.errors import CheckpointError, ConfigError
from ssl_bench.models import create_model
from ssl_bench.results import TrainResult
from ssl_bench.utils import atomic_write_bytes, resolve_device

CHECKPOINT_FORMAT = 1
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine", "cosine_quarter")
EMA_BUFFERS = ("copy", "average")


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate at 0-based ``step``: cosine lr*cos(7*pi*k/(16K)) of the fixmatch repo (§1.6), AdaMatch's
    cosine_quarter, or constant (Gen-1 Adam)."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr * math.cos(7 * math.pi * step / (16 * cfg.steps))
    if cfg.lr_schedule == "cosine_quarter":  # AdaMatch: lr*cos(arccos(0.25)*k/K), ends at lr/4 (§1.6)
        return cfg.lr * math.cos(math.acos(0.25) * step / cfg.steps)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    raise ConfigError(f"train.lr_schedule: unknown schedule {cfg.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")


def decay_split(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(conv/linear weights, everything else): weight decay applies to the first group only (§1.6)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return decay, no_decay


def make_optimizer(cfg: TrainConfig, module: nn.Module) -> torch.optim.Optimizer:
    """sgd: Nesterov SGD with coupled L2 on weights (fixmatch repo); adam: Adam, decay applied after the step."""
    decay, no_decay = decay_split(module)
    if cfg.optimizer == "sgd":
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        groups = [{"params": decay, "decoupled": True}, {"params": no_decay, "decoupled": False}]
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=0.0)
    raise ConfigError(f"train.optimizer: unknown optimizer {cfg.optimizer!r}; valid: adam, sgd")


@torch.no_grad()
def decoupled_decay(cfg: TrainConfig, optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Gen-1 convention (§1.6): after the Adam step, every weight is multiplied by 1 - wd * lr."""
    if cfg.optimizer != "adam" or cfg.weight_decay == 0:
        return
    for group in optimizer.param_groups:
        if group.get("decoupled"):
            torch._foreach_mul_(group["params"], 1.0 - cfg.weight_decay * lr)


class EMA:
    """Exponential moving average of a model's parameters; buffers (BN statistics) are copied (§1.7, TF repos)
    or, with ``buffers="average"``, averaged like the parameters (objax, AdaMatch). The average starts from the
    initial weights (TF), not from zeros (objax).

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
        ema_params = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            if self.buffers == "average" and b.is_floating_point():
                b_ema.lerp_(b, 1.0 - decay)  # objax averages BN statistics too (§1.7)
            else:
                b_ema.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    """Top-1 accuracy of ``model`` in inference mode on uint8 images already on the model's device."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(to_input(images[start : start + batch_size]))
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(images), 1)


def median_last(history: list[tuple[int, float]], k: int) -> float:
    """Median of the last k recorded accuracies (§1.8); the headline metric, never the best seen."""
    return float(statistics.median(acc for _, acc in history[-k:]))


def subsample_pool(pool: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded random subset of ``n`` images of the unlabeled pool (``data.n_unlabeled``)."""
    if n > len(pool):
        raise ConfigError(f"data.n_unlabeled = {n} is more than the {len(pool)} images of the unlabeled pool")
    return np.sort(np.random.default_rng([seed, n]).choice(pool, size=n, replace=False))


class Trainer:
    """Runs one ``RunConfig`` on a dataset and split, resuming from ``checkpoint`` if it exists."""

    def __init__(self, cfg: RunConfig, ds: ImageDataset, split: Split | DASplit, config_hash: str) -> None:
        self.cfg, self.ds, self.split, self.config_hash = cfg, ds, split, config_hash
        tc = cfg.train
        self.device = resolve_device(tc.device)
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, ds.num_classes, ds.channels, ds.image_size)
        self.algorithm: Algorithm = get_algorithm(cfg.algorithm.name)(model, cfg.algorithm, ds.num_classes)
        self.algorithm.to(self.device).train()
        self.ema = EMA(self.algorithm.model, tc.ema_decay, tc.ema_warmup, tc.ema_buffers)
        self.optimizer = make_optimizer(tc, self.algorithm)
        self.spec = self.algorithm.views()
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        roles = {*self.spec.labeled, *self.spec.unlabeled}
        names = {r: "none" if r == "none" else getattr(cfg.augment, r) for r in roles}
        self.augmentation = "+".join(sorted(set(names.values())))  # the policies this run really used
        by_name = {n: create_policy(n, cfg.augment, ds.hflip) for n in sorted(set(names.values()))}
        policies = {r: by_name[n] for r, n in names.items()}
        # CTAugment learns from probes of the labeled images (§2.2): its state lives here, not in the algorithm
        self.feedback = {n: p.feedback for n, p in by_name.items() if getattr(p, "feedback", None) is not None}
        self.probe_base = create_policy("weak", cfg.augment, ds.hflip)
        self.train_images = ds.train_images.to(self.device)
        self.train_labels = torch.full_like(ds.train_labels, -1).to(self.device)  # revealed labels only
        self.views = ViewBuilder(self.train_images, self.train_labels, self.spec, policies, self.generator)
        self.set_labeled(split.labeled)
        self.test_images = ds.test_images.to(self.device)
        self.test_labels = ds.test_labels.to(self.device)
        self.step = 0
        self.history: list[tuple[int, float]] = []
        self.wall_s = 0.0

    def set_labeled(self, indices: np.ndarray) -> None:
        """Use ``indices`` as the labeled pool: reveal their labels (and only theirs) and rebuild the streams.

        The unlabeled pool comes from the split: the training pool minus validation (and minus the labeled images
        where ``data.unlabeled_includes_labeled`` is false), or the target domain's images in uda/ssda. The labeled
        target images of an ssda split get a stream of their own. Streams are named by the pool size, so a grown
        pool gets fresh, seeded permutations.
        """
        tc, n_train = self.cfg.train, len(self.ds.train_labels)
        self.labeled_pool = np.asarray(sorted(int(i) for i in indices), dtype=np.int64)
        target = self.split.target_labeled
        self.train_labels.fill_(-1)
        for part in (self.labeled_pool, target):
            idx = torch.as_tensor(part, dtype=torch.int64)
            self.train_labels[idx.to(self.device)] = self.ds.train_labels[idx].to(self.device)
        tag = f"{len(self.labeled_pool)}" if len(self.labeled_pool) != len(self.split.labeled) else ""
        self.labeled = IndexStream(self.labeled_pool, tc.batch_size, self.cfg.seed, f"labeled{tag}")
        self.labeled_target = IndexStream(target, tc.batch_size, self.cfg.seed, "target") if len(target) else None
        self.unlabeled, self.n_unlabeled = None, 0
        if self.spec.uratio:
            pool = self.split.pool(n_train, self.labeled_pool, self.cfg.data.unlabeled_includes_labeled)
            if self.cfg.data.n_unlabeled:
                pool = subsample_pool(pool, self.cfg.data.n_unlabeled, self.cfg.seed)
            self.n_unlabeled = len(pool)
            batch = tc.batch_size * self.spec.uratio
            self.unlabeled = IndexStream(pool, batch, self.cfg.seed, f"unlabeled{tag}")

    # ------------------------------------------------------------------------------------------------------
    # checkpoints

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "views": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "config_hash": self.config_hash,
            "split_hash": self.split.hash,
            "step": self.step,
            "algorithm": self.algorithm.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "augment": {n: f.state_dict() for n, f in self.feedback.items()},
            "labeled_pool": torch.as_tensor(self.labeled_pool),
            "streams": {
                "labeled": self.labeled.state_dict(),
                "unlabeled": self.unlabeled.state_dict() if self.unlabeled else None,
                "target": self.labeled_target.state_dict() if self.labeled_target else None,
            },
            "history": [list(h) for h in self.history],
            "wall_s": self.wall_s,
        }

    def save(self, path: Path) -> None:
        import io

        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        atomic_write_bytes(path, buf.getvalue())

    def load(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for truncated or foreign files
            raise CheckpointError(f"checkpoint {path} is corrupted or unreadable ({type(exc).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {path} is not an ssl_bench checkpoint (format {CHECKPOINT_FORMAT})")
        if state.get("config_hash") != self.config_hash:
            raise CheckpointError(f"checkpoint {path} belongs to another config (config hash mismatch)")
        if state.get("split_hash") != self.split.hash:
            raise CheckpointError(f"checkpoint {path} was trained on another split (split hash mismatch)")
        try:
            self.algorithm.load_state_dict(state["algorithm"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"]["torch"])
            self.generator.set_state(state["rng"]["views"])
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
            for n, f in self.feedback.items():
                f.load_state_dict(state["augment"][n])
            self.set_labeled(state["labeled_pool"].numpy())
            self.labeled.load_state_dict(state["streams"]["labeled"])
            if self.unlabeled is not None:
                self.unlabeled.load_state_dict(state["streams"]["unlabeled"])
            if self.labeled_target is not None:
                self.labeled_target.load_state_dict(state["streams"]["target"])
            self.step = int(state["step"])
            self.history = [(int(s), float(a)) for s, a in state["history"]]
            self.wall_s = float(state["wall_s"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} does not match this run ({type(exc).__name__}: {exc})") from None

    # ------------------------------------------------------------------------------------------------------
    # the loop

    def train_step(self) -> dict[str, float]:
        tc = self.cfg.train
        lr = lr_at(tc, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        labeled_idx = self.labeled.next()
        target_idx = self.labeled_target.next() if self.labeled_target else None
        batch = self.views.build(
            labeled_idx,
            self.unlabeled.next() if self.unlabeled else None,
            target_idx,
            self.algorithm.separate_target_labels,
        )
        if self.feedback:  # probes: the labeled images of the step, source + labeled target in ssda (§2.2)
            probe_idx = labeled_idx if target_idx is None else torch.cat([labeled_idx, target_idx])
            self.probe_feedback(probe_idx.to(self.device))
        loss, metrics = self.algorithm.step(batch, self.step / tc.steps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        decoupled_decay(tc, self.optimizer, lr)
        self.ema.update(self.algorithm.model)
        self.step += 1
        return {"loss": loss.detach(), "lr": lr, **metrics}

    @torch.no_grad()
    def probe_feedback(self, labeled_idx: torch.Tensor) -> None:
        """CTAugment update (§2.2): probes of the weakly augmented labeled images, classified by the EMA model in
        inference mode; omega = its probability of the true class."""
        weak = self.probe_base(self.train_images[labeled_idx], self.generator)
        labels = self.train_labels[labeled_idx]
        for cta in self.feedback.values():
            probes, record = cta.probe(weak, self.generator)
            probs = self.ema.model(to_input(probes)).softmax(1)
            cta.update(record, probs.gather(1, labels[:, None]).squeeze(1))

    def run(
        self,
        checkpoint: Path | None = None,
        stop_at: int | None = None,
        log_dir: Path | None = None,
        desc: str = "",
        resume: bool = True,
    ) -> TrainResult | None:
        """Train to ``train.steps``; returns None when stopped at ``stop_at`` (resume tests, active learning).

        With ``resume`` an existing ``checkpoint`` is loaded first; a caller that continues the same trainer in
        the same process passes ``resume=False``.
        """
        from tqdm import tqdm

        tc = self.cfg.train
        if resume and checkpoint is not None and checkpoint.exists():
            self.load(checkpoint)
        ckpt_every = tc.checkpoint_every or tc.eval_every
        writer = None
        if tc.tensorboard and log_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("train.tensorboard needs the tensorboard package: pip install tensorboard") from None
            writer = SummaryWriter(str(log_dir))
        bar = tqdm(
            total=tc.steps,
            initial=self.step,
            desc=desc,
            unit="step",
            disable=not tc.progress,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        last_acc = self.history[-1][1] if self.history else float("nan")
        t0 = time.perf_counter()
        try:
            while self.step < tc.steps:
                metrics = self.train_step()
                if self.step % tc.eval_every == 0 or self.step == tc.steps:
                    last_acc = evaluate(self.ema.model, self.test_images, self.test_labels, tc.eval_batch_size)
                    self.history.append((self.step, last_acc))
                    if writer is not None:
                        writer.add_scalar("acc/test", last_acc, self.step)
                        for k, v in metrics.items():
                            writer.add_scalar(k, float(v), self.step)
                    bar.set_postfix(loss=f"{float(metrics['loss']):.3f}", acc=f"{last_acc:.3f}", refresh=False)
                bar.update(1)
                stopping = stop_at is not None and self.step >= stop_at
                if checkpoint is not None and (self.step % ckpt_every == 0 or stopping) and self.step < tc.steps:
                    self.wall_s += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save(checkpoint)
                if stopping and self.step < tc.steps:
                    return None
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        self.wall_s += time.perf_counter() - t0
        k = min(tc.median_k, len(self.history))
        return self.result(median_last(self.history, tc.median_k), self.history[-1][1], k)

    def result(self, acc_median: float, acc_final: float, median_k: int) -> TrainResult:
        """The run's result so far, with the given headline (active-learning rounds pass their own)."""
        tc = self.cfg.train
        return TrainResult(
            acc_history=list(self.history),
            acc_median=acc_median,
            acc_final=acc_final,
            median_k=median_k,
            acc_raw_final=evaluate(self.algorithm.model, self.test_images, self.test_labels, tc.eval_batch_size),
            steps=self.step,
            images_seen=self.step * tc.batch_size,
            wall_s=self.wall_s,
            device=str(self.device),
            augmentation=self.augmentation,
            n_unlabeled=self.n_unlabeled,
        )
