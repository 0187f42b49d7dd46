"""The peer-style pipeline that ``ssl-bench bench train --pipeline reference`` times next to the trainer's.

It feeds the project's own algorithm step the way today's PyTorch ports feed theirs: a ``torch.utils.data``
DataLoader whose worker processes turn one image at a time into PIL views (weak flip-and-translate, RandAugment or
CTAugment with fixed bin weights, the PIL pipelines of ``ssl_bench.augment.pil_reference``), a float32 NCHW model,
no compilation, no allocator tuning. The loss, backward pass, optimizer and EMA are the trainer's, so the two
pipelines differ only in how a batch is made and in the speed switches. It does no CTAugment probing (ports do that
in the main process on extra batches), which only flatters it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ssl_bench.augment import Batch, effective_flip
from ssl_bench.augment.pil_reference import PIL_PIPELINES, PILWeak
from ssl_bench.config import RunConfig
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.splits import Split
from ssl_bench.errors import ConfigError
from ssl_bench.train import build_run
from ssl_bench.train.feed import data_info
from ssl_bench.train.optim import decoupled_decay, lr_at


def check_reference(run: RunConfig) -> None:
    """What the reference pipeline can feed: the ssl setting, with policies that have a PIL version."""
    if run.data.setting != "ssl":
        raise ConfigError(f"--pipeline reference times the ssl setting only, not {run.data.setting}")
    for role in ("weak", "strong"):
        name = getattr(run.augment, role)
        if name != "none" and name not in PIL_PIPELINES:
            raise ConfigError(f"--pipeline reference has no PIL version of augment.{role} = {name!r}")


def pil_view(name: str, run: RunConfig, size: int, hflip: bool) -> Callable[[Image.Image], Image.Image] | None:
    """The per-image PIL pipeline of policy ``name`` (None: no augmentation)."""
    if name == "none":
        return None
    if name not in PIL_PIPELINES:
        raise ConfigError(f"--pipeline reference has no PIL version of augmentation {name!r}")
    weak = PILWeak(size, flip=effective_flip(run.augment, hflip), translate=run.augment.translate)
    if name == "weak":
        return weak
    pipeline = PIL_PIPELINES[name](size)
    pipeline.weak = weak  # the strong pipelines start from the weak view, with the run's flip and translation
    return pipeline


def to_input_tensor(img: Image.Image) -> torch.Tensor:
    """A PIL image as float (C, H, W) in [-1, 1], the model's input range (x * 2/255 - 1,
    docs/reference/common.md#image-encoding-and-datasets)."""
    arr = np.asarray(img, dtype=np.float32)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr)).mul_(2.0 / 255.0).sub_(1.0)


class PILViews(Dataset):
    """Item i: the views of image ``indices[i]``, one PIL pipeline per view role (and its label if ``labels``), and
    the image's position in the training set (``Batch.idx_x`` / ``idx_u``)."""

    def __init__(self, images: np.ndarray, indices: np.ndarray, views: list, labels: np.ndarray | None = None) -> None:
        self.images, self.indices, self.views, self.labels = images, indices, views, labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        img = Image.fromarray(self.images[j])
        out = tuple(to_input_tensor(v(img) if v is not None else img) for v in self.views)
        return (*out, j) if self.labels is None else (*out, int(self.labels[j]), j)


class ReferencePipeline:
    """One training step at a time, fed by DataLoader workers; ``step`` returns its phase times in seconds."""

    def __init__(self, run: RunConfig, ds: ImageDataset, split: Split, device: torch.device, workers: int) -> None:
        check_reference(run)
        plain = dataclasses.replace(
            run.train, precision="fp32", memory_format="contiguous", compile="none", cpu_malloc="default"
        )
        self.run, self.device, self.tc = run, device, plain
        data = data_info(run, ds.train_labels, ds.num_classes, split, split.labeled)
        self.parts = build_run(dataclasses.replace(run, train=plain), ds, device, data=data)
        assert self.parts.optimizer is not None  # build_run leaves it out only when asked (the plan's validation)
        self.optimizer = self.parts.optimizer
        spec = self.parts.spec
        images = ds.train_images.permute(0, 2, 3, 1).numpy()
        images = images[..., 0] if images.shape[-1] == 1 else images
        labels = ds.train_labels.numpy()
        size = ds.image_size

        def views(roles: tuple[str, ...]) -> list:
            return [pil_view("none" if r == "none" else getattr(run.augment, r), run, size, ds.hflip) for r in roles]

        def loader(dataset: PILViews, batch: int) -> DataLoader:
            return DataLoader(
                dataset,
                batch_size=batch,
                sampler=RandomSampler(dataset, replacement=True, num_samples=1 << 30),
                num_workers=workers,
                drop_last=True,
                persistent_workers=workers > 0,
                pin_memory=device.type == "cuda",
            )

        b = plain.batch_size
        self.labeled = iter(loader(PILViews(images, split.labeled, views(spec.labeled), labels), b))
        self.unlabeled = None
        if spec.uratio:
            pool = split.pool(len(labels), split.labeled, run.data.unlabeled_includes_labeled)
            self.unlabeled = iter(loader(PILViews(images, pool, views(spec.unlabeled)), b * spec.uratio))
        self.step_index = 0
        self.images_per_step = b * len(spec.labeled) + b * spec.uratio * len(spec.unlabeled)
        self.speed = {
            "precision": "fp32",
            "memory_format": "contiguous",
            "compile": "none",
            "cpu_malloc": "default",
            "threads": torch.get_num_threads(),
            "workers": workers,
        }

    def _move(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        *x, y, idx_x = next(self.labeled)
        *u, idx_u = next(self.unlabeled) if self.unlabeled is not None else (None,)
        t1 = time.perf_counter()
        batch = Batch(
            x=tuple(map(self._move, x)),
            y=self._move(y),
            u=tuple(map(self._move, u)),
            idx_x=self._move(idx_x),
            idx_u=None if idx_u is None else self._move(idx_u),
        )
        parts, optimizer, lr = self.parts, self.optimizer, lr_at(self.tc, self.step_index)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, _ = parts.algorithm.step(batch, self.step_index / self.tc.steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decoupled_decay(self.tc, optimizer, lr)
        parts.ema.update(parts.algorithm.model)
        self.step_index += 1
        self._sync()
        t2 = time.perf_counter()
        return {"data": t1 - t0, "probes": 0.0, "model": t2 - t1}
