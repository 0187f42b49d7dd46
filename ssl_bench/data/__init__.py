"""Datasets (uint8 arrays), canonical splits with manifests, and seeded index streams."""

from ssl_bench.data import datasets, domains, folder, vision  # noqa: F401  (registers every loader)
from ssl_bench.data.datasets import ImageDataset, load_dataset

__all__ = ["ImageDataset", "load_dataset"]
