"""The one training loop: steps, evaluation cadence, checkpoint/resume and progress; the run's parts come built.

Conventions follow reference-algorithms.md §1.1 (steps, evaluation every 64 kimg), §1.7 (the EMA model is the one
evaluated) and §1.8 (the headline is the median of the last k evaluations).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ssl_bench.augment.views import to_input
from ssl_bench.config import RunConfig
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.splits import DASplit, Split
from ssl_bench.errors import CheckpointError, RunMemoryError, one_line
from ssl_bench.results import TrainResult
from ssl_bench.train.build import build_run
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
from ssl_bench.utils import atomic_write_bytes, out_of_memory, resolve_device

CHECKPOINT_FORMAT = 1


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
    """Median of the last k recorded accuracies (§1.8); the headline metric, never the best seen."""
    return float(statistics.median(acc for _, acc in history[-k:]))


class StepClock(Protocol):
    """Receives the end of each phase of a step (``data``, ``probes``, ``model``): ``ssl-bench bench train``."""

    def lap(self, phase: str) -> None: ...


class Trainer:
    """Trains one ``RunConfig`` on a dataset and split; ``run`` resumes from a checkpoint if there is one.

    Active learning drives it through ``labeled_pool``, ``candidates``, ``predict``, ``pixels``, ``reveal``,
    ``train_to``, ``resume``, ``save`` and ``result`` (the ``Learner`` interface of ``active/loop.py``).
    """

    def __init__(
        self, cfg: RunConfig, ds: ImageDataset, split: Split | DASplit, config_hash: str, dist: Dist = SINGLE
    ) -> None:
        self.cfg, self.split, self.config_hash, self.dist = cfg, split, config_hash, dist
        self.device = resolve_device(cfg.train.device)
        if dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", dist.local_rank)  # torchrun: one GPU per local rank
        self.speed = resolve(cfg.train, self.device)
        apply_process_settings(self.speed)
        data = data_info(cfg, ds.train_labels, ds.num_classes, split, split.labeled)
        parts = build_run(cfg, ds, self.device, channels_last=self.speed.channels_last, data=data)
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
    # checkpoints

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "views": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "config_hash": self.config_hash,
            "split_hash": self.split.hash,
            "world_size": self.dist.world,
            "step": self.step,
            "algorithm": self.algorithm.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "augment": {n: f.state_dict() for n, f in self.feedback.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            **self.feed.state_dict(),  # labeled_pool, streams
            "history": [list(h) for h in self.history],
            "wall_s": self.wall_s,
        }

    def save(self, path: Path) -> None:
        if self.before_save is not None:
            self.before_save()
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
        world = int(state.get("world_size", 1))
        if world != self.dist.world:
            raise CheckpointError(
                f"checkpoint {path} was trained on {world} process(es), this run has {self.dist.world}: resume it "
                f"with the same world size (torchrun --nproc_per_node ...), or delete the checkpoint to start over"
            )
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
            if self.scaler is not None:
                self.scaler.load_state_dict(state["scaler"])
            self.feed.load_state_dict(state)
            self.algorithm.set_data(self.feed.data_info(self.algorithm.num_classes))
            self.step = int(state["step"])
            self.history = [(int(s), float(a)) for s, a in state["history"]]
            self.wall_s = float(state["wall_s"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} does not match this run ({type(exc).__name__}: {exc})") from None

    def resume(self, checkpoint: Path) -> bool:
        """Load ``checkpoint`` if it exists; True if it did."""
        if not checkpoint.exists():
            return False
        self.load(checkpoint)
        return True

    # ------------------------------------------------------------------------------------------------------
    # the loop

    def train_step(self) -> dict[str, float]:
        tc = self.cfg.train
        lr = lr_at(tc, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.feed.next(self.algorithm.separate_target_labels)
        self._lap("data")
        if self.feedback:  # probes: the labeled images of the step, source + labeled target in ssda (§2.2)
            self.probe_feedback(batch.idx_x if batch.idx_target is None else torch.cat([batch.idx_x, batch.idx_target]))
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

    def _lap(self, phase: str) -> None:
        if self.clock is not None:
            self.clock.lap(phase)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return self.speed.autocast(self.device)

    @torch.no_grad()
    def probe_feedback(self, labeled_idx: torch.Tensor) -> None:
        """CTAugment update (§2.2): probes of the weakly augmented labeled images, classified by the EMA model in
        inference mode; omega = its probability of the true class."""
        weak = self.probe_base(self.feed.images[labeled_idx], self.generator)
        labels = self.feed.labels[labeled_idx]
        for cta in self.feedback.values():
            probes, record = cta.probe(weak, self.generator)
            with self._autocast():
                probs = self.ema.model(to_input(probes)).float().softmax(1)
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
                        self.ema.model, self.test_images, self.test_labels, tc.eval_batch_size, self._autocast
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
                saving = checkpoint is not None and (self.step % ckpt_every == 0 or stopping) and self.step < tc.steps
                if saving and main:
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
            acc_raw_final=evaluate(
                self.algorithm.model, self.test_images, self.test_labels, tc.eval_batch_size, self._autocast
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
    # what active learning uses (the Learner interface of active/loop.py)

    @property
    def labeled_pool(self) -> np.ndarray:
        """Dataset indices of the labeled images, sorted."""
        return self.feed.labeled_pool

    def candidates(self) -> np.ndarray:
        """Training images that could still be labeled: neither labeled nor held out for validation."""
        return self.feed.candidates()

    def reveal(self, indices: np.ndarray) -> None:
        """Label ``indices`` too: their labels become visible and the streams restart on the grown pools."""
        self.feed.set_labeled(np.concatenate([self.labeled_pool, np.asarray(indices, dtype=np.int64)]))
        self.algorithm.set_data(self.feed.data_info(self.algorithm.num_classes))

    def train_to(self, step: int, checkpoint: Path, desc: str = "") -> None:
        """Continue this trainer (no reload) up to ``step``, checkpointing on the way and at the end."""
        self.run(checkpoint, stop_at=step, resume=False, desc=desc)

    @torch.no_grad()
    def predict(self, indices: np.ndarray, aug_k: int = 0, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(EMA-model probabilities, pooled raw-model embeddings) of training images ``indices``; with ``aug_k``
        the probabilities are averaged over that many weak augmentations (the ``.aug`` acquisitions, §7.4)."""
        probs, feats = [], []
        model, raw = self.ema.model, self.algorithm.model
        was_training = raw.training
        raw.eval()
        for start in range(0, len(indices), batch):
            images = self.feed.images[torch.as_tensor(indices[start : start + batch]).to(self.device)]
            with self._autocast():
                if aug_k:
                    augmented = (self.probe_base(images, self.generator) for _ in range(aug_k))
                    p = sum(model(to_input(v)).float().softmax(1) for v in augmented) / aug_k
                else:
                    p = model(to_input(images)).float().softmax(1)
                probs.append(p.cpu())
                feats.append(raw.embed(to_input(images)).float().cpu())
        raw.train(was_training)
        return torch.cat(probs).numpy(), torch.cat(feats).numpy()

    def pixels(self, indices: np.ndarray) -> np.ndarray:
        """The uint8 pixels of training images ``indices`` as float32 (N, C, H, W)."""
        return self.feed.images[torch.as_tensor(indices).to(self.device)].float().cpu().numpy()
