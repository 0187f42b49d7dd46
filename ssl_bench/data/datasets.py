"""Dataset registry lookup: load a registered dataset once, resized once to ``data.image_size``, and keep it in
memory while it is among the last two used (a pair's two domains) or all kept ones fit in ``images.CACHE_BYTES``."""

from __future__ import annotations

from dataclasses import replace

from ssl_bench.config import DataConfig
from ssl_bench.data.images import ImageDataset, evict, resize_images
from ssl_bench.registry import DATASETS

_CACHE: dict[tuple, ImageDataset] = {}  # least recently used first
KEEP = 2


def load_dataset(cfg: DataConfig) -> ImageDataset:
    """Load the dataset named in ``cfg`` (or reuse the one in memory), resized to ``cfg.image_size`` if set."""
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
    _CACHE[key] = _CACHE.pop(key)  # now the most recently used
    evict(_CACHE, KEEP)
    return _CACHE[key]
