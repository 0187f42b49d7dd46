"""What each training step is fed: device-resident images, the labels revealed so far, and seeded index streams."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ssl_bench.algorithms import DataInfo
from ssl_bench.augment import Batch, Policy, ViewBuilder, ViewSpec
from ssl_bench.config import RunConfig
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.splits import Split
from ssl_bench.data.streams import IndexStream
from ssl_bench.devices import to_device


def subsample_pool(pool: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded random subset of ``n`` images of the unlabeled pool (``data.n_unlabeled``)."""
    if n > len(pool):
        raise ValueError(f"a subset of {n} images of a pool of {len(pool)}")  # the plan checks the pool sizes
    return np.sort(np.random.default_rng([seed, n]).choice(pool, size=n, replace=False))


def unlabeled_pool(run: RunConfig, split: Split, n_train: int, labeled: np.ndarray) -> np.ndarray:
    """The unlabeled pool for the labeled pool ``labeled``: the split's pool (the training images minus validation,
    and minus the labeled images where ``data.unlabeled_includes_labeled`` is false; the target domain's images in
    uda/ssda), or its seeded subset of ``data.n_unlabeled`` images."""
    pool = split.pool(n_train, labeled, run.data.unlabeled_includes_labeled)
    return subsample_pool(pool, run.data.n_unlabeled, run.seed) if run.data.n_unlabeled else pool


def data_info(
    run: RunConfig, train_labels: torch.Tensor, num_classes: int, split: Split, labeled: np.ndarray
) -> DataInfo:
    """What the algorithm of ``run`` may know of its data when ``labeled`` is the labeled pool (``DataInfo``)."""
    n_train = len(train_labels)
    revealed = np.concatenate([labeled, split.target_labeled]).astype(np.int64)
    counts = np.bincount(train_labels.numpy()[revealed], minlength=num_classes)
    return DataInfo(
        num_classes=num_classes,
        n_train=n_train,
        n_labeled=len(revealed),
        n_unlabeled=len(unlabeled_pool(run, split, n_train, labeled)),
        labeled_counts=tuple(int(c) for c in counts),
    )


class Feed:
    """The training images on the device, a label tensor holding -1 for every label not revealed, and the streams
    over the labeled pool, the unlabeled pool and (ssda) the labeled target images, turned into views per step."""

    def __init__(
        self,
        run: RunConfig,
        ds: ImageDataset,
        split: Split,
        spec: ViewSpec,
        policies: dict[str, Policy],
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.run, self.split, self.spec, self.device = run, split, spec, device
        self.true_labels = ds.train_labels  # on the CPU; copied to the device only once revealed
        self.images = ds.train_images.to(device)
        self.labels = torch.full_like(ds.train_labels, -1).to(device)
        self.views = ViewBuilder(self.images, self.labels, spec, policies, generator)
        self.set_labeled(split.labeled)

    @property
    def n_train(self) -> int:
        return len(self.true_labels)

    def set_labeled(self, indices: np.ndarray) -> None:
        """Use ``indices`` as the labeled pool: reveal their labels (and only theirs) and rebuild the streams.

        The unlabeled pool comes from the split: the training pool minus validation (and minus the labeled images
        where ``data.unlabeled_includes_labeled`` is false), or the target domain's images in uda/ssda. The labeled
        target images of an ssda split get a stream of their own. Streams are named by the pool size, so a grown
        pool gets fresh, seeded permutations.
        """
        run, tc = self.run, self.run.train
        self.labeled_pool = np.asarray(sorted(int(i) for i in indices), dtype=np.int64)
        target = self.split.target_labeled
        self.labels.fill_(-1)
        for part in (self.labeled_pool, target):
            idx = torch.as_tensor(part, dtype=torch.int64)
            self.labels[idx.to(self.device)] = self.true_labels[idx].to(self.device)
        tag = f"{len(self.labeled_pool)}" if len(self.labeled_pool) != len(self.split.labeled) else ""
        self.labeled = IndexStream(self.labeled_pool, tc.batch_size, run.seed, f"labeled{tag}")
        self.labeled_target = IndexStream(target, tc.batch_size, run.seed, "target") if len(target) else None
        self.unlabeled, self.n_unlabeled = None, 0
        if self.spec.uratio:
            pool = unlabeled_pool(run, self.split, self.n_train, self.labeled_pool)
            self.n_unlabeled = len(pool)
            self.unlabeled = IndexStream(pool, tc.batch_size * self.spec.uratio, run.seed, f"unlabeled{tag}")

    def data_info(self, num_classes: int) -> DataInfo:
        """The ``DataInfo`` of the current labeled pool."""
        return data_info(self.run, self.true_labels, num_classes, self.split, self.labeled_pool)

    def candidates(self) -> np.ndarray:
        """Training images that could still be labeled: neither labeled nor held out for validation."""
        keep = np.ones(self.n_train, dtype=bool)
        keep[self.split.valid] = False
        keep[self.labeled_pool] = False
        return np.flatnonzero(keep)

    def next(self, separate_target: bool) -> Batch:
        """The views of the next step, with the training-set positions of its images. Every index of the step
        reaches the device in one copy."""
        streams = [s for s in (self.labeled, self.labeled_target, self.unlabeled) if s is not None]
        idx = torch.cat([s.next() for s in streams])
        on_device = to_device(idx, self.device).split([s.batch_size for s in streams])
        # keyed by stream; an absent stream is None, which .get finds nowhere
        parts: dict[IndexStream | None, torch.Tensor] = dict(zip(streams, on_device, strict=True))
        labeled, unlabeled, target = parts[self.labeled], parts.get(self.unlabeled), parts.get(self.labeled_target)
        return self.views.build(labeled, unlabeled, target, separate_target)

    def state_dict(self) -> dict[str, Any]:
        return {
            "labeled_pool": torch.as_tensor(self.labeled_pool),
            "streams": {
                "labeled": self.labeled.state_dict(),
                "unlabeled": self.unlabeled.state_dict() if self.unlabeled else None,
                "target": self.labeled_target.state_dict() if self.labeled_target else None,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_labeled(state["labeled_pool"].numpy())
        self.labeled.load_state_dict(state["streams"]["labeled"])
        if self.unlabeled is not None:
            self.unlabeled.load_state_dict(state["streams"]["unlabeled"])
        if self.labeled_target is not None:
            self.labeled_target.load_state_dict(state["streams"]["target"])
