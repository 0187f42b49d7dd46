"""Datasets as uint8 arrays, canonical splits with manifests, and seeded index streams.

``load_data`` is the dataset of a run in any setting; the modules below it:

- ``images``: the in-memory format (``ImageDataset``) and its conversions (layout, size, channels);
- ``datasets``: the registry lookup with a per-process cache; loaders ``digits``, ``digits_m``, ``vision``
  (torchvision's files), ``folder`` (a class-folder tree) and ``synthetic`` (random images for timing) register
  themselves on import;
- ``pairs``: domain pairs (source -> target) loaded as one dataset;
- ``split_ids``: the ids of SSL and domain-adaptation splits; ``splits``: the one ``Split`` type, its draws and
  manifest files;
- ``streams``: seeded, resumable index batches.
"""

from ssl_bench.config import DataConfig
from ssl_bench.data import digits, digits_m, folder, synthetic, vision  # noqa: F401  (registers every loader)
from ssl_bench.data.datasets import load_dataset
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.pairs import load_pair


def load_data(cfg: DataConfig) -> ImageDataset:
    """The dataset a run trains on: ``data.dataset`` (setting ssl) or the pair ``data.source -> data.target``; the
    plan has checked the setting's keys (``ssl_bench.data.checks.check_data``)."""
    return load_dataset(cfg) if cfg.setting == "ssl" else load_pair(cfg)


__all__ = ["ImageDataset", "load_data", "load_dataset"]
