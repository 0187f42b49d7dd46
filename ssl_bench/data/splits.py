"""Canonical split ids and their verified manifest files, for SSL and domain-adaptation runs alike.

SSL splits ``dataset.seed@labels-valid`` follow the reference's draw (reference-algorithms.md §1.3); the
domain-adaptation splits ``source-target.seed@uda`` / ``@ssdaK`` of AdaMatch's settings (§6) draw their K labeled
target images per class with the same rule. Both share one manifest path: read, verify, or draw and save once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ssl_bench.atomic_write import atomic_write_text
from ssl_bench.config import DataConfig, pair_name
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.pairs import get_pair
from ssl_bench.errors import DataError, SplitError
from ssl_bench.registry import DATASETS

_SPLIT_RE = re.compile(r"^(?P<dataset>[A-Za-z0-9_]+)\.(?P<seed>\d+)@(?P<labels>\d+)-(?P<valid>\d+)$")
MANIFEST_FORMAT = 1
S = TypeVar("S")


@dataclass(frozen=True)
class SplitId:
    """The parsed form of ``dataset.seed@labels-valid``, e.g. ``cifar10.3@250-500``."""

    dataset: str
    seed: int
    n_labels: int
    n_valid: int

    def __str__(self) -> str:
        return f"{self.dataset}.{self.seed}@{self.n_labels}-{self.n_valid}"

    @classmethod
    def parse(cls, text: str) -> SplitId:
        m = _SPLIT_RE.match(text.strip())
        if not m:
            raise SplitError(f"invalid split id {text!r}; expected dataset.seed@labels-valid, e.g. digits.1@40-100")
        DATASETS.get(m["dataset"])
        return cls(m["dataset"], int(m["seed"]), int(m["labels"]), int(m["valid"]))


def greedy_select(per_class: list[np.ndarray], freq: np.ndarray, n: int) -> tuple[list[int], np.ndarray]:
    """The reference's distribution-matched pick (§1.3 step 4): take from argmax_c freq_c - npos_c / max(npos).

    Ties go to the lowest class; an exhausted class is skipped. Returns the picks and the per-class counts.
    """
    npos = np.zeros(len(per_class), dtype=np.int64)
    avail = np.array([len(p) for p in per_class])
    picks: list[int] = []
    for _ in range(n):
        score = freq - npos / max(int(npos.max()), 1)
        score = np.where(npos < avail, score, -np.inf)
        c = int(np.argmax(score))
        picks.append(int(per_class[c][npos[c]]))
        npos[c] += 1
    return picks, npos


def check_budget(n_labels: int, num_classes: int, dataset: str, class_balance: str) -> None:
    """What a run and ``ssl-bench split`` accept: at least one label per class, and for a balanced split exactly
    n_labels / classes of each. ``draw_split`` itself follows the reference's greedy rule (§1.3), which hands the
    remainder of an uneven budget to the lowest classes; the suite's balanced splits never have one."""
    if n_labels < num_classes:
        raise SplitError(f"label budget {n_labels} is smaller than the {num_classes} classes of {dataset}")
    if class_balance == "balanced" and n_labels % num_classes:
        raise SplitError(
            f"{n_labels} labels do not divide into {num_classes} classes: a balanced split (data.class_balance) "
            f"takes exactly labels / classes of each; use a multiple of {num_classes} or class_balance = 'proportional'"
        )


def draw_split(labels: np.ndarray, num_classes: int, sid: SplitId, class_balance: str) -> tuple[np.ndarray, np.ndarray]:
    """Labeled and validation indices into the training pool; deterministic in (labels, sid, class_balance).

    Per class, indices are shuffled with ``np.random.RandomState(seed)`` in class order (seed 0: file order),
    the labeled set is taken greedily (exact budget; balanced, or proportional to class frequency), and the
    validation set continues down the same per-class lists, so it never overlaps the labeled set.
    """
    n_train = len(labels)
    if sid.n_labels < num_classes:
        raise SplitError(f"label budget {sid.n_labels} is smaller than the {num_classes} classes of {sid.dataset}")
    if sid.n_labels + sid.n_valid > n_train:
        raise SplitError(
            f"label budget {sid.n_labels} plus {sid.n_valid} validation images exceeds the {n_train} training images"
            f" of {sid.dataset}"
        )
    if class_balance not in ("balanced", "proportional"):
        raise SplitError(f"data.class_balance must be balanced or proportional, got {class_balance!r}")
    rng = np.random.RandomState(sid.seed)
    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    if sid.seed != 0:
        for idx in per_class:
            rng.shuffle(idx)
    counts = np.array([len(p) for p in per_class], dtype=np.float64)
    if (counts == 0).any():
        raise SplitError(f"{sid.dataset} has classes with no training image: {np.flatnonzero(counts == 0).tolist()}")
    freq = np.ones(num_classes) if class_balance == "balanced" else counts / counts.max()
    labeled, npos = greedy_select(per_class, freq, sid.n_labels)
    rest = [p[k:] for p, k in zip(per_class, npos, strict=True)]
    valid, _ = greedy_select(rest, freq, sid.n_valid)
    return np.array(sorted(labeled), dtype=np.int64), np.array(sorted(valid), dtype=np.int64)


@dataclass(frozen=True)
class Split:
    """A drawn split: labeled and validation indices into the training pool, tied to a dataset fingerprint."""

    id: str
    labeled: np.ndarray
    valid: np.ndarray
    fingerprint: str
    class_balance: str

    @property
    def hash(self) -> str:
        return _content_hash(self.id, self.fingerprint, self.class_balance, self.labeled, self.valid)

    @property
    def target_labeled(self) -> np.ndarray:
        """Labeled target-domain images of a domain-adaptation split; none in the SSL setting."""
        return np.zeros(0, dtype=np.int64)

    def pool(self, n_train: int, labeled: np.ndarray, include_labeled: bool) -> np.ndarray:
        """The unlabeled pool given the current labeled pool ``labeled`` (it grows under active learning)."""
        keep = np.ones(n_train, dtype=bool)
        keep[self.valid] = False
        if not include_labeled:
            keep[labeled] = False
        return np.flatnonzero(keep)

    def unlabeled(self, n_train: int, include_labeled: bool) -> np.ndarray:
        """The unlabeled pool: every training image except validation (and, if asked, except the labeled ones)."""
        keep = np.ones(n_train, dtype=bool)
        keep[self.valid] = False
        if not include_labeled:
            keep[self.labeled] = False
        return np.flatnonzero(keep)

    def manifest(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "split": self.id,
            "class_balance": self.class_balance,
            "dataset_fingerprint": self.fingerprint,
            "n_labeled": len(self.labeled),
            "n_valid": len(self.valid),
            "labeled": self.labeled.tolist(),
            "valid": self.valid.tolist(),
            "hash": self.hash,
        }


def _content_hash(sid: str, fingerprint: str, balance: str, labeled: np.ndarray, valid: np.ndarray) -> str:
    blob = json.dumps([sid, fingerprint, balance, np.asarray(labeled).tolist(), np.asarray(valid).tolist()])
    return hashlib.sha256(blob.encode()).hexdigest()


def manifest_path(manifest_dir: Path, sid: SplitId | str, class_balance: str = "balanced") -> Path:
    suffix = "" if class_balance == "balanced" else f".{class_balance}"
    return Path(manifest_dir) / f"{sid}{suffix}.json"


def read_verified(path: Path, ds: ImageDataset, parse: Callable[[dict], S]) -> S:
    """Load a manifest with ``parse`` (JSON dict -> split) and verify its own hash and that it was made from
    exactly this dataset (fingerprint)."""
    try:
        m = json.loads(path.read_text())
        split = parse(m)
        stored_hash = m["hash"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"split manifest {path} is unreadable or malformed ({exc})") from None
    if split.hash != stored_hash:
        raise DataError(f"split manifest {path} was modified: its indices no longer match its hash")
    if split.fingerprint != ds.fingerprint():
        raise DataError(
            f"split manifest {path} was made from different {ds.name} data (fingerprint mismatch); "
            "restore the original dataset files or move the manifest away to draw a new split"
        )
    return split


def read_or_draw(
    path: Path | None, sid: object, ds: ImageDataset, parse: Callable[[dict], S], draw: Callable[[], S], write: bool
) -> S:
    """The split ``sid``: read from its manifest at ``path`` if it exists (verified), else drawn and saved once."""
    if path is not None and path.exists():
        split = read_verified(path, ds, parse)
        if split.id != str(sid):
            raise DataError(f"split manifest {path} holds split {split.id}, not {sid}")
        return split
    split = draw()
    if path is not None and write:
        atomic_write_text(path, json.dumps(split.manifest(), indent=1) + "\n")
    return split


def _parse_split(m: dict) -> Split:
    return Split(
        id=m["split"],
        labeled=np.asarray(m["labeled"], dtype=np.int64),
        valid=np.asarray(m["valid"], dtype=np.int64),
        fingerprint=m["dataset_fingerprint"],
        class_balance=m["class_balance"],
    )


def read_manifest(path: Path, ds: ImageDataset) -> Split:
    """Load and verify an SSL split manifest."""
    return read_verified(path, ds, _parse_split)


def get_split(
    ds: ImageDataset,
    sid: SplitId,
    class_balance: str = "balanced",
    manifest_dir: Path | None = None,
    write: bool = True,
) -> Split:
    """The split ``sid`` of ``ds``: read from its manifest if one exists (verified), else drawn and saved once."""
    path = manifest_path(manifest_dir, sid, class_balance) if manifest_dir is not None else None

    def draw() -> Split:
        labeled, valid = draw_split(ds.train_labels.numpy(), ds.num_classes, sid, class_balance)
        return Split(str(sid), labeled, valid, ds.fingerprint(), class_balance)

    return read_or_draw(path, sid, ds, _parse_split, draw, write)


# ----------------------------------------------------------------------------------------------------------
# domain-adaptation splits

_DA_SPLIT_RE = re.compile(
    r"^(?P<source>[A-Za-z0-9_:]+)-(?P<target>[A-Za-z0-9_:]+)\.(?P<seed>\d+)@(?:uda|ssda(?P<k>[1-9]\d*))$"
)


@dataclass(frozen=True)
class DASplitId:
    """``source-target.seed@uda`` or ``source-target.seed@ssdaK`` (K labeled target images per class)."""

    source: str
    target: str
    seed: int
    target_labels: int

    @property
    def setting(self) -> str:
        return "ssda" if self.target_labels else "uda"

    def __str__(self) -> str:
        tail = f"ssda{self.target_labels}" if self.target_labels else "uda"
        return f"{pair_name(self.source, self.target)}.{self.seed}@{tail}"

    @classmethod
    def parse(cls, text: str) -> DASplitId:
        m = _DA_SPLIT_RE.match(text.strip())
        if not m:
            raise SplitError(
                f"invalid domain-adaptation split id {text!r}; expected source-target.seed@uda or "
                "source-target.seed@ssdaK, e.g. digits-digits_m.1@ssda1"
            )
        get_pair(m["source"], m["target"])
        return cls(m["source"], m["target"], int(m["seed"]), int(m["k"] or 0))


@dataclass(frozen=True)
class DASplit:
    """Every source image labeled; ``target_local`` (indices into the target's training images) labeled too.

    Pool indices: source images are 0..n_source-1, target images n_source..n_train-1.
    """

    id: str
    target_local: np.ndarray
    n_source: int
    n_train: int
    fingerprint: str
    class_balance: str = "balanced"

    @property
    def labeled(self) -> np.ndarray:
        return np.arange(self.n_source, dtype=np.int64)

    @property
    def target_labeled(self) -> np.ndarray:
        return self.n_source + self.target_local

    @property
    def valid(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    @property
    def hash(self) -> str:
        blob = json.dumps([self.id, self.fingerprint, self.n_source, self.n_train, self.target_local.tolist()])
        return hashlib.sha256(blob.encode()).hexdigest()

    def pool(self, n_train: int, labeled: np.ndarray, include_labeled: bool) -> np.ndarray:
        """The unlabeled pool: every target training image (minus the labeled ones unless ``include_labeled``)."""
        if n_train != self.n_train:
            raise DataError(f"split {self.id} covers {self.n_train} training images, the pair has {n_train}")
        keep = np.zeros(n_train, dtype=bool)
        keep[self.n_source :] = True
        if not include_labeled:
            keep[self.target_labeled] = False
        return np.flatnonzero(keep)

    def manifest(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "split": self.id,
            "dataset_fingerprint": self.fingerprint,
            "n_source": self.n_source,
            "n_target": self.n_train - self.n_source,
            "labeled_target": self.target_local.tolist(),
            "hash": self.hash,
        }


def draw_da_split(ds: ImageDataset, sid: DASplitId) -> DASplit:
    """k target images per class: the class-balanced draw of SSL splits (§1.3) on the target's training labels."""
    target_labels = ds.train_labels[ds.n_source :].numpy()
    k = sid.target_labels
    local = np.zeros(0, dtype=np.int64)
    if k:
        counts = np.bincount(target_labels, minlength=ds.num_classes)
        short = int(np.argmin(counts))
        if counts[short] < k:
            name = f" ({ds.classes[short]})" if ds.classes and ds.classes[short] != str(short) else ""
            raise SplitError(
                f"data.target_labels = {k} per class is more than target {sid.target} has: class "
                f"{short}{name} has {counts[short]} training images"
            )
        draw = SplitId(sid.target, sid.seed, k * ds.num_classes, 0)
        local, _ = draw_split(target_labels, ds.num_classes, draw, "balanced")
    return DASplit(str(sid), local, ds.n_source, len(ds.train_labels), ds.fingerprint())


def _parse_da_split(m: dict) -> DASplit:
    return DASplit(
        id=m["split"],
        target_local=np.asarray(m["labeled_target"], dtype=np.int64),
        n_source=int(m["n_source"]),
        n_train=int(m["n_source"]) + int(m["n_target"]),
        fingerprint=m["dataset_fingerprint"],
    )


def read_da_manifest(path: Path, ds: ImageDataset) -> DASplit:
    """Load and verify a domain-adaptation split manifest."""
    return read_verified(path, ds, _parse_da_split)


def get_da_split(ds: ImageDataset, sid: DASplitId, manifest_dir: Path | None = None, write: bool = True) -> DASplit:
    """The split ``sid`` of the pair ``ds``: read from its manifest if one exists (verified), else drawn and saved."""
    path = manifest_path(manifest_dir, sid) if manifest_dir is not None else None
    return read_or_draw(path, sid, ds, _parse_da_split, lambda: draw_da_split(ds, sid), write)


# ----------------------------------------------------------------------------------------------------------
# the split of one run, in any setting


def run_split_id(cfg: DataConfig, seed: int) -> SplitId | DASplitId:
    if cfg.setting == "ssl":
        return SplitId(cfg.dataset, seed, cfg.n_labels, cfg.n_valid)
    return DASplitId(cfg.source, cfg.target, seed, cfg.target_labels)


def get_run_split(
    ds: ImageDataset, cfg: DataConfig, seed: int, manifest_dir: Path | None, write: bool = True
) -> Split | DASplit:
    """The split of one run in any setting (manifests under ``manifest_dir``)."""
    sid = run_split_id(cfg, seed)
    if isinstance(sid, DASplitId):
        return get_da_split(ds, sid, manifest_dir, write)
    return get_split(ds, sid, cfg.class_balance, manifest_dir, write)
