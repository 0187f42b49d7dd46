"""What the label-growth loop needs from training: the pools, the scoring passes, the label reveal and the rounds.

The trainer knows one loop and nothing of rounds; this adapter gives active learning its view of a ``Trainer``
(MMA, docs/algorithms/mma.md#training to docs/algorithms/mma.md#acquisition) through the trainer's public parts: its
feed, its two models, its random generator, ``set_labeled``, ``run``, ``save``, ``resume`` and ``result``.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch

from ssl_bench.augment.views import to_input
from ssl_bench.models.backbone import Backbone
from ssl_bench.results.record import TrainResult
from ssl_bench.train import Trainer


class Learner:
    """A ``Trainer`` as the label-growth loop drives it (``active/loop.py``)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    @property
    def step(self) -> int:
        return self.trainer.step

    @property
    def history(self) -> list[tuple[int, float]]:
        return self.trainer.history

    @property
    def labeled_pool(self) -> np.ndarray:
        """Dataset indices of the labeled images, sorted."""
        return self.trainer.feed.labeled_pool

    def candidates(self) -> np.ndarray:
        """Training images that could still be labeled: neither labeled nor held out for validation."""
        return self.trainer.feed.candidates()

    def reveal(self, indices: np.ndarray) -> None:
        """Label ``indices`` too: their labels become visible and the streams restart on the grown pools."""
        self.trainer.set_labeled(np.concatenate([self.labeled_pool, np.asarray(indices, dtype=np.int64)]))

    def train_to(self, step: int, checkpoint: Path, desc: str = "") -> None:
        """Continue the trainer (no reload) up to ``step``, checkpointing on the way and at the end."""
        self.trainer.run(checkpoint, stop_at=step, resume=False, desc=desc)

    def resume(self, checkpoint: Path) -> bool:
        """Load ``checkpoint`` if it exists; True if it did."""
        return self.trainer.resume(checkpoint)

    def save(self, checkpoint: Path) -> None:
        self.trainer.save(checkpoint)

    def result(self, acc_median: float, acc_final: float, median_k: int) -> TrainResult:
        """The round's result, with the round's own headline."""
        return self.trainer.result(acc_median, acc_final, median_k)

    @torch.no_grad()
    def predict(self, indices: np.ndarray, aug_k: int = 0, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(EMA-model probabilities, pooled raw-model embeddings) of training images ``indices``; with ``aug_k``
        the probabilities are averaged over that many weak augmentations (the ``.aug`` acquisitions,
        docs/algorithms/mma.md#acquisition), drawn from the training generator, which a resume restores."""
        t = self.trainer
        probs, feats = [], []
        model = t.ema.model
        raw = cast(Backbone, t.algorithm.model)  # every model is a Backbone (models.create_model): it has embed
        was_training = raw.training
        raw.eval()
        for start in range(0, len(indices), batch):
            images = t.feed.images[torch.as_tensor(indices[start : start + batch]).to(t.device)]
            with t.autocast():
                if aug_k:
                    augmented = (t.probe_base(images, t.generator) for _ in range(aug_k))
                    p = sum(model(to_input(v)).float().softmax(1) for v in augmented) / aug_k
                else:
                    p = model(to_input(images)).float().softmax(1)
                probs.append(p.cpu())
                feats.append(raw.embed(to_input(images)).float().cpu())
        raw.train(was_training)
        return torch.cat(probs).numpy(), torch.cat(feats).numpy()

    def pixels(self, indices: np.ndarray) -> np.ndarray:
        """The uint8 pixels of training images ``indices`` as float32 (N, C, H, W)."""
        t = self.trainer
        return t.feed.images[torch.as_tensor(indices).to(t.device)].float().cpu().numpy()
