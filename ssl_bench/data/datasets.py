"""Dataset registry lookup: load a registered dataset once per process, resized once to ``data.image_size``."""

from __future__ import annotations

from dataclasses import replace

from ssl_bench.config import DataConfig
from ssl_bench.data.images import ImageDataset, resize_images
from ssl_bench.registry import DATASETS

_CACHE: dict[tuple, ImageDataset] = {}


def load_dataset(cfg: DataConfig) -> ImageDataset:
    """Load (once per process) the dataset named in ``cfg``, resized to ``cfg.image_size`` if set."""
    loader = DATASETS.get(cfg.dataset)
    key = (cfg.dataset, cfg.root, cfg.extra, cfg.image_size)
    if key not in _CACHE:
        ds = loader(cfg)
        ds = replace(ds, source_fingerprint=ds.fingerprint())
        if cfg.image_size:
            ds = replace(
                ds,
                train_images=resize_images(ds.train_images, cfg.image_size),
                test_images=resize_images(ds.test_images, cfg.image_size),
                unlabeled=None if ds.unlabeled is None else resize_images(ds.unlabeled, cfg.image_size),
            )
        ds.validate()
        _CACHE[key] = ds
    return _CACHE[key]
