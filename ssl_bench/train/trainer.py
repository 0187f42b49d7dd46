"""The one training loop: steps, evaluation cadence, when to checkpoint and resume, and progress.

The run's parts come built (``build``), each step's batch comes from the feed (``feed``) and the checkpoint format is
``checkpoint``'s; what active learning needs between its rounds lives with active learning (``active.learner``).

Conventions follow docs/reference/common.md#training-loop-units (steps, evaluation every 64 kimg),
docs/reference/common.md#ema-model (the EMA model is the one evaluated) and docs/reference/common.md#reporting-protocol
(the headline is the median of the last k evaluations).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ssl_bench.augment.views import to_input
from ssl_bench.config import RunConfig
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.splits import Split
from ssl_bench.devices import out_of_memory, resolve_device
from ssl_bench.errors import RunMemoryError, one_line
from ssl_bench.results.record import TrainResult
from ssl_bench.train.build import build_run
from ssl_bench.train.checkpoint import load as load_checkpoint
from ssl_bench.train.checkpoint import save as save_checkpoint
from ssl_bench.train.distributed import (
    SINGLE,
    Dist,
    ProcessGroupRanks,
    device_name,
    forward_through,
    shard,
    sync_batchnorm,
    wrap,
)
from ssl_bench.train.divergence import DivergenceGuard
from ssl_bench.train.feed import Feed, data_info
from ssl_bench.train.optim import decoupled_decay, lr_at
from ssl_bench.train.switches import apply_process_settings, resolve


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """Top-1 accuracy of ``model`` in inference mode on uint8 images already on the model's device; the count
    stays on the device until the end (one host sync per evaluation)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for start in range(0, len(images), batch_size):
        with autocast():
            logits = model(to_input(images[start : start + batch_size]))
        correct += (logits.argmax(1) == labels[start : start + batch_size]).sum()
    model.train(was_training)
    return int(correct) / max(len(images), 1)


def median_last(history: list[tuple[int, float]], k: int) -> float:
    """Median of the last k recorded accuracies (docs/reference/common.md#reporting-protocol); the headline metric,
    never the best seen."""
    return float(statistics.median(acc for _, acc in history[-k:]))


class StepClock(Protocol):
    """Receives the end of each phase of a step (``data``, ``probes``, ``model``): ``ssl-bench bench train``."""

    def lap(self, phase: str) -> None: ...


class Trainer:
    """Trains one ``RunConfig`` on a dataset and split; ``run`` resumes from a checkpoint if there is one.

    Active learning (``ssl_bench.active.learner``) drives it between rounds through ``set_labeled``, ``feed``, the
    two models, ``generator``, ``autocast``, ``run``, ``save``, ``resume`` and ``result``.
    """

    def __init__(self, cfg: RunConfig, ds: ImageDataset, split: Split, config_hash: str, dist: Dist = SINGLE) -> None:
        self.cfg, self.split, self.config_hash, self.dist = cfg, split, config_hash, dist
        self.device = resolve_device(cfg.train.device)
        if dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", dist.local_rank)  # torchrun: one GPU per local rank
        self.speed = resolve(cfg.train, self.device)
        apply_process_settings(self.speed)
        data = data_info(cfg, ds.train_labels, ds.num_classes, split, split.labeled)
        parts = build_run(cfg, ds, self.device, channels_last=self.speed.channels_last, data=data)
        assert parts.optimizer is not None  # build_run leaves it out only when asked (the plan's validation)
        self.algorithm, self.ema, self.optimizer = parts.algorithm, parts.ema, parts.optimizer
        self.feedback, self.probe_base, self.augmentation = parts.feedback, parts.probe_base, parts.augmentation
        self.flip = parts.flip
        self.ddp = None
        if dist.active:  # train/distributed.py: global-batch BN on request, gradients averaged by DDP
            if cfg.train.sync_bn:  # the teacher's batch-statistics passes too (Algorithm.teacher)
                self.algorithm.model = sync_batchnorm(self.algorithm.model, self.device)
                self.ema.model = sync_batchnorm(self.ema.model, self.device)
                self.algorithm.bind_teacher(self.ema.model)
            self.ddp = wrap(self.algorithm.model, self.device)
            self.algorithm.ranks = ProcessGroupRanks(dist)
        self.devices = dist.gather(device_name(self.device))
        if self.speed.compile == "model":
            self.algorithm.model.compile()
            self.ema.model.compile()
        # fp16 needs loss scaling so that small gradients do not flush to zero; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(self.device.type) if self.speed.precision == "fp16" else None
        self.clock: StepClock | None = None
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.feed = Feed(cfg, ds, split, parts.spec, parts.policies, self.generator, self.device)
        self.test_images = ds.test_images.to(self.device)
        self.test_labels = ds.test_labels.to(self.device)
        self.step = 0
        self.history: list[tuple[int, float]] = []
        self.wall_s = 0.0
        self.guard = DivergenceGuard(cfg.train, ds.num_classes, self.device, dist)
        self.before_save: Callable[[], None] | None = None  # e.g. pin the split manifest with the first checkpoint

    # ------------------------------------------------------------------------------------------------------
    # the loop

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
        if resume and checkpoint is not None:
            self.resume(checkpoint)
        ckpt_every = tc.checkpoint_every or tc.eval_every
        main = self.dist.is_main  # checkpoints, progress and tensorboard come from rank 0
        writer = None
        if tc.tensorboard and log_dir is not None and main:
            from torch.utils.tensorboard import SummaryWriter  # the plan checks that tensorboard is installed

            writer = SummaryWriter(str(log_dir))
        bar = tqdm(
            total=tc.steps,
            initial=self.step,
            desc=desc,
            unit="step",
            disable=not (tc.progress and main),
            dynamic_ncols=True,
            mininterval=1.0,
        )
        last_acc = self.history[-1][1] if self.history else float("nan")
        t0 = time.perf_counter()
        try:
            while self.step < tc.steps:
                metrics = self.train_step()
                if self.step % tc.eval_every == 0 or self.step == tc.steps:
                    last_acc = evaluate(
                        self.ema.model, self.test_images, self.test_labels, tc.eval_batch_size, self.autocast
                    )
                    self.history.append((self.step, last_acc))
                    self.guard.check(self.step, metrics["loss"], self.history)
                    if writer is not None:
                        writer.add_scalar("acc/test", last_acc, self.step)
                        for k, v in metrics.items():
                            writer.add_scalar(k, float(v), self.step)
                    bar.set_postfix(loss=f"{float(metrics['loss']):.3f}", acc=f"{last_acc:.3f}", refresh=False)
                bar.update(1)
                stopping = stop_at is not None and self.step >= stop_at
                saving = (self.step % ckpt_every == 0 or stopping) and self.step < tc.steps
                if checkpoint is not None and saving and main:
                    self.wall_s += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save(checkpoint)
                if stopping and self.step < tc.steps:
                    return None
        except (RuntimeError, MemoryError) as exc:
            if not out_of_memory(exc):
                raise
            raise RunMemoryError(
                f"ran out of {self.device.type} memory at step {self.step + 1} ({one_line(exc)}): use a smaller "
                f"train.batch_size, train.eval_batch_size or model; the last checkpoint is kept"
            ) from None
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        self.wall_s += time.perf_counter() - t0
        median_k = min(tc.median_k, len(self.history))
        return self.result(median_last(self.history, tc.median_k), self.history[-1][1], median_k)

    def train_step(self) -> dict[str, torch.Tensor | float]:
        tc = self.cfg.train
        lr = lr_at(tc, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.feed.next(self.algorithm.separate_target_labels)
        self._lap("data")
        # probes: the labeled images of the step, source + labeled target in ssda
        # (docs/reference/augmentation.md#ctaugment)
        if self.feedback:
            idx_x = batch.idx_x
            assert idx_x is not None  # the feed gives every batch its positions
            self.probe_feedback(idx_x if batch.idx_target is None else torch.cat([idx_x, batch.idx_target]))
            self._lap("probes")
        batch = shard(batch, self.dist)  # this rank's slice of the global batch (the whole batch on one process)
        with self.speed.autocast(self.device), forward_through(self.algorithm, self.ddp):
            loss, metrics = self.algorithm.step(batch, self.step / tc.steps)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        decoupled_decay(tc, self.optimizer, lr)
        if self.ddp is not None and not tc.sync_bn:
            self.dist.broadcast_buffers(self.algorithm.model)
        self.ema.update(self.algorithm.model)
        self.step += 1
        self.guard.watch(self.step, loss)
        self._lap("model")
        return {"loss": loss.detach(), "lr": lr, **metrics}  # tensors: read on the host only when logged

    @torch.no_grad()
    def probe_feedback(self, labeled_idx: torch.Tensor) -> None:
        """CTAugment update (docs/reference/augmentation.md#ctaugment): probes of the weakly augmented labeled images,
        classified by the EMA model in inference mode; omega = its probability of the true class."""
        weak = self.probe_base(self.feed.images[labeled_idx], self.generator)
        labels = self.feed.labels[labeled_idx]
        for cta in self.feedback.values():
            probes, record = cta.probe(weak, self.generator)
            with self.autocast():
                probs = self.ema.model(to_input(probes)).float().softmax(1)
            cta.update(record, probs.gather(1, labels[:, None]).squeeze(1))

    def _lap(self, phase: str) -> None:
        if self.clock is not None:
            self.clock.lap(phase)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision the forward passes run in (``train.precision`` resolved for the device)."""
        return self.speed.autocast(self.device)

    def result(self, acc_median: float, acc_final: float, median_k: int) -> TrainResult:
        """The run's result so far, with the given headline (active-learning rounds pass their own)."""
        tc = self.cfg.train
        return TrainResult(
            acc_history=list(self.history),
            acc_median=acc_median,
            acc_final=acc_final,
            median_k=median_k,
            acc_raw_final=evaluate(
                self.algorithm.model, self.test_images, self.test_labels, tc.eval_batch_size, self.autocast
            ),
            steps=self.step,
            images_seen=self.step * tc.batch_size,
            wall_s=self.wall_s,
            device=str(self.device),
            augmentation=self.augmentation,
            flip=self.flip,
            n_unlabeled=self.feed.n_unlabeled,
            speed=self.speed.as_record(),
            world_size=self.dist.world,
            devices=list(self.devices),
        )

    # ------------------------------------------------------------------------------------------------------
    # between runs: checkpoints (their format: train/checkpoint.py) and a grown labeled pool (active learning)

    def resume(self, path: Path) -> bool:
        """Load the checkpoint at ``path`` if it exists; True if it did."""
        if not path.exists():
            return False
        load_checkpoint(self, path)
        return True

    def save(self, path: Path) -> None:
        """Checkpoint the run to ``path``, after ``before_save`` (the runner pins the split manifest there)."""
        if self.before_save is not None:
            self.before_save()
        save_checkpoint(self, path)

    def set_labeled(self, indices: np.ndarray) -> None:
        """Use ``indices`` as the labeled pool from the next step on: the feed reveals their labels and restarts
        its streams, and the algorithm sees the new pool sizes (``DataInfo``)."""
        self.feed.set_labeled(indices)
        self.algorithm.set_data(self.feed.data_info(self.algorithm.num_classes))
