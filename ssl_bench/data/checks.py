"""The [data] section's checks: keys that agree with each other, a dataset a classifier can learn, enough images.

The plan (``ssl_bench.plan``) calls them for every run before anything is trained or written; each type, choice
and range of a single key is declared on ``DataConfig`` itself (``config_checks``).
"""

from __future__ import annotations

from ssl_bench.config import DataConfig, RunConfig
from ssl_bench.data.pairs import get_pair
from ssl_bench.data.splits import Split, check_budget
from ssl_bench.errors import ConfigError

# image sides data.image_size may resize to: below 8 px no augmentation or network here is meaningful, and above
# 512 px a dataset held in memory as float tensors stops fitting (CIFAR-10 at 512 px is ~150 GB)
MIN_SIDE, MAX_SIDE = 8, 512


def check_data(cfg: DataConfig) -> None:
    """The [data] keys of a setting agree with each other (before any file is read)."""
    if cfg.image_size != 0 and not MIN_SIDE <= cfg.image_size <= MAX_SIDE:
        raise ConfigError(
            f"data.image_size must be 0 (native size) or between {MIN_SIDE} and {MAX_SIDE} pixels, got {cfg.image_size}"
        )
    if cfg.setting == "ssl":
        for key, default in (("source", ""), ("target", ""), ("target_labels", 0), ("channels", 0)):
            if getattr(cfg, key) != default:
                raise ConfigError(f"data.{key} applies to settings uda and ssda; setting ssl uses data.dataset alone")
        return
    get_pair(cfg.source, cfg.target)  # both domains known, or a folder pair
    if cfg.setting == "uda" and cfg.target_labels != 0:
        raise ConfigError(f"setting uda uses no target labels, got data.target_labels = {cfg.target_labels}")
    if cfg.setting == "ssda" and cfg.target_labels < 1:
        raise ConfigError(f"setting ssda needs data.target_labels >= 1 per class, got {cfg.target_labels}")
    if cfg.n_valid:
        raise ConfigError(f"data.n_valid must be 0 in setting {cfg.setting} (no validation set is carved out)")
    if cfg.channels not in (0, 1, 3):
        raise ConfigError(f"data.channels must be 0 (automatic), 1 or 3, got {cfg.channels}")


def check_classes(run: RunConfig, num_classes: int) -> None:
    """A classifier needs two classes, and a balanced split exactly n_labels / classes labels of each."""
    if num_classes < 2:
        raise ConfigError(f"dataset {run.dataset} has {num_classes} class(es); a classifier needs at least 2")
    if run.data.setting == "ssl":  # before any split is drawn or read
        check_budget(run.data.n_labels, num_classes, run.dataset, run.data.class_balance)


def check_unlabeled_pool(cfg: DataConfig, n_train: int, split: Split) -> None:
    """The split's unlabeled pool holds at least ``data.n_unlabeled`` images."""
    pool = len(split.pool(n_train, split.labeled, cfg.unlabeled_includes_labeled))
    if cfg.n_unlabeled > pool:
        raise ConfigError(f"data.n_unlabeled = {cfg.n_unlabeled} is more than the {pool} unlabeled images")
