"""Domain pairs for domain adaptation: the pair registry and loading a pair as one dataset in one image format.

Settings of AdaMatch (Berthelot et al., arXiv 2106.04732; docs/algorithms/adamatch.md): ``uda`` (labeled source,
unlabeled target), ``ssda`` (plus k labeled target images per class) and ``ssl`` (one dataset, the usual splits).
A pair is held as one ``ImageDataset`` whose training pool is the source's training images followed by the
target's, and whose test set is the target's, so the trainer's labeled/unlabeled machinery serves every setting.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ssl_bench.config import DataConfig, pair_name
from ssl_bench.config_checks import field_choices
from ssl_bench.data.datasets import load_dataset
from ssl_bench.data.images import ImageDataset, evict, to_channels
from ssl_bench.errors import ConfigError, DataError
from ssl_bench.registry import Registry

SETTINGS = field_choices(DataConfig, "setting") or ()
FOLDER_PREFIX = "folder:"


@dataclass(frozen=True)
class PairSpec:
    """A (source, target) pair; ``image_size`` is the common side used when ``data.image_size`` is 0."""

    source: str
    target: str
    image_size: int
    note: str = ""

    @property
    def name(self) -> str:
        return pair_name(self.source, self.target)


PAIRS: Registry = Registry("domain pair")
for _spec in (
    PairSpec("digits", "digits_m", 16, "offline; digits_m is this project's construction, not MNIST-M"),
    PairSpec("mnist", "usps", 32, "torchvision files (data.download to fetch)"),
    PairSpec("usps", "mnist", 32, "torchvision files (data.download to fetch)"),
    PairSpec("svhn", "mnist", 32, "torchvision files (data.download to fetch)"),
    PairSpec("mnist", "svhn", 32, "torchvision files (data.download to fetch)"),
):
    PAIRS.add(_spec.name, _spec)

_DOMAIN_RE = re.compile(r"^[A-Za-z0-9_]+$")


def pair_choices() -> str:
    return ", ".join([*(n.replace("-", " -> ") for n in PAIRS.names()), "folder:<domain> -> folder:<domain>"])


def get_pair(source: str, target: str) -> PairSpec:
    """The pair ``source -> target``: a registered one, or two domain folders under ``data.root``."""
    if not source or not target:
        raise ConfigError(f"settings uda and ssda need data.source and data.target; pairs: {pair_choices()}")
    if source.startswith(FOLDER_PREFIX) or target.startswith(FOLDER_PREFIX):
        domains = [d.removeprefix(FOLDER_PREFIX) for d in (source, target)]
        if not (source.startswith(FOLDER_PREFIX) and target.startswith(FOLDER_PREFIX)):
            raise ConfigError(f"unknown domain pair {source} -> {target}: a folder pair needs folder: on both sides")
        for d in domains:
            if not _DOMAIN_RE.match(d):
                raise ConfigError(f"folder domain {d!r} must be a folder name of letters, digits and _")
        if domains[0] == domains[1]:
            raise ConfigError(f"source and target are the same folder domain {domains[0]!r}")
        return PairSpec(source, target, 0, "folder pair: data.root/<domain>/<class>/*.jpg|png")
    name = pair_name(source, target)
    if name not in PAIRS:
        raise ConfigError(f"unknown domain pair {source} -> {target}; valid pairs: {pair_choices()}")
    return PAIRS.get(name)


def domain_config(cfg: DataConfig, domain: str, size: int) -> DataConfig:
    """The single-dataset config of one domain of a pair, at the pair's common side."""
    base = replace(cfg, setting="ssl", source="", target="", target_labels=0, image_size=size)
    if domain.startswith(FOLDER_PREFIX):
        root = Path(cfg.root).expanduser() / domain.removeprefix(FOLDER_PREFIX)
        return replace(base, dataset="folder", root=str(root))
    return replace(base, dataset=domain)


def check_label_sets(source: ImageDataset, target: ImageDataset, src_name: str, tgt_name: str) -> None:
    if source.classes is not None and target.classes is not None:
        if source.classes != target.classes:
            only = sorted(set(source.classes) ^ set(target.classes))
            detail = f"only in one: {', '.join(only[:8])}" if only else "same names in a different order"
            raise DataError(f"domain pair {src_name} -> {tgt_name}: the label sets differ ({detail})")
    elif source.num_classes != target.num_classes:
        raise DataError(
            f"domain pair {src_name} -> {tgt_name}: the label sets differ "
            f"({source.num_classes} vs {target.num_classes} classes)"
        )


_CACHE: dict[tuple, ImageDataset] = {}


def load_pair(cfg: DataConfig) -> ImageDataset:
    """Source and target of ``cfg`` brought to one side (``data.image_size`` or the pair's default; bilinear,
    antialiased when shrinking) and one channel count (``data.channels``; 0 = RGB if either domain has colour)."""
    spec = get_pair(cfg.source, cfg.target)
    size = cfg.image_size or spec.image_size
    if size <= 0:
        raise ConfigError(f"domain pair {spec.source} -> {spec.target} needs data.image_size (the common side)")
    key = (spec.name, cfg.root, cfg.extra, size, cfg.channels)
    if key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)  # now the most recently used
        return _CACHE[key]
    src = load_dataset(domain_config(cfg, spec.source, size))
    tgt = load_dataset(domain_config(cfg, spec.target, size))
    check_label_sets(src, tgt, spec.source, spec.target)
    channels = cfg.channels or max(src.channels, tgt.channels)
    blob = json.dumps([spec.name, src.fingerprint(), tgt.fingerprint()])
    pair = ImageDataset(
        name=spec.name,
        train_images=torch.cat([to_channels(src.train_images, channels), to_channels(tgt.train_images, channels)]),
        train_labels=torch.cat([src.train_labels, tgt.train_labels]),
        test_images=to_channels(tgt.test_images, channels),
        test_labels=tgt.test_labels,
        num_classes=tgt.num_classes,
        hflip=src.hflip and tgt.hflip,
        source_fingerprint=hashlib.sha256(blob.encode()).hexdigest(),
        classes=tgt.classes,
        n_source=len(src.train_labels),
    )
    pair.validate()
    _CACHE[key] = pair
    evict(_CACHE, 1)  # the pair of the current run, older ones while they fit (as load_dataset's domains)
    return pair
