"""Drawn splits and their verified manifest files, one ``Split`` type for the SSL and domain-adaptation settings.

SSL splits follow the reference's draw (docs/reference/common.md#label-splits); the domain-adaptation splits of
AdaMatch's settings (docs/algorithms/adamatch.md) draw their K labeled target images per class with the same rule. Both
share one manifest path (named by the split id, ``split_ids``): read and verified if it exists, else drawn and saved
once, so a split never changes under the records made on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_bench.atomic_write import atomic_write_text
from ssl_bench.config import DataConfig
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.split_ids import DASplitId, SplitId, run_split_id
from ssl_bench.errors import DataError, SplitError

MANIFEST_FORMAT = 1


def greedy_select(per_class: list[np.ndarray], freq: np.ndarray, n: int) -> tuple[list[int], np.ndarray]:
    """The reference's distribution-matched pick (docs/reference/common.md#label-splits step 4): take from argmax_c
    freq_c - npos_c / max(npos).

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
    n_labels / classes of each. ``draw_split`` itself follows the reference's greedy rule
    (docs/reference/common.md#label-splits), which hands the remainder of an uneven budget to the lowest classes; the
    suite's balanced splits never have one."""
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
    """A drawn split, tied to a dataset fingerprint: labeled and validation indices into the training pool.

    SSL (``target_local`` None): the labeled draw and a validation set. Domain adaptation (uda, ssda): the pool is
    the pair's, source images 0..n_source-1 then the target's n_source..n_train-1; every source image is labeled,
    and so are the ``target_local`` images (indices into the target's training images; none in uda); there is no
    validation set. ``n_source`` and ``n_train`` are 0 in SSL, whose manifests record neither.
    """

    id: str
    labeled: np.ndarray
    valid: np.ndarray
    fingerprint: str
    class_balance: str = "balanced"
    target_local: np.ndarray | None = None
    n_source: int = 0
    n_train: int = 0

    @classmethod
    def domain_adaptation(
        cls, sid: str, target_local: np.ndarray, n_source: int, n_train: int, fingerprint: str
    ) -> Split:
        """The uda/ssda split of a pair: every source image labeled, ``target_local`` labeled too."""
        labeled, none = np.arange(n_source, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return cls(sid, labeled, none, fingerprint, "balanced", target_local, n_source, n_train)

    @property
    def setting(self) -> str:
        """ssl, uda or ssda (``data.setting``)."""
        if self.target_local is None:
            return "ssl"
        return "ssda" if len(self.target_local) else "uda"

    @property
    def target_labeled(self) -> np.ndarray:
        """Pool indices of the labeled target images of a domain-adaptation split; none in the SSL setting."""
        if self.target_local is None:
            return np.zeros(0, dtype=np.int64)
        return self.n_source + self.target_local

    @property
    def hash(self) -> str:
        if self.target_local is None:
            return _content_hash(self.id, self.fingerprint, self.class_balance, self.labeled, self.valid)
        blob = json.dumps([self.id, self.fingerprint, self.n_source, self.n_train, self.target_local.tolist()])
        return hashlib.sha256(blob.encode()).hexdigest()

    def pool(self, n_train: int, labeled: np.ndarray, include_labeled: bool) -> np.ndarray:
        """The unlabeled pool given the current labeled pool ``labeled`` (it grows under active learning): every
        training image except validation (SSL) or every target training image (uda/ssda), minus the labeled ones
        unless ``include_labeled``."""
        keep = np.ones(n_train, dtype=bool)
        if self.target_local is None:
            keep[self.valid] = False
            if not include_labeled:
                keep[labeled] = False
            return np.flatnonzero(keep)
        if n_train != self.n_train:
            raise DataError(f"split {self.id} covers {self.n_train} training images, the pair has {n_train}")
        keep[: self.n_source] = False
        if not include_labeled:
            keep[self.target_labeled] = False
        return np.flatnonzero(keep)

    def unlabeled(self, n_train: int, include_labeled: bool) -> np.ndarray:
        """The unlabeled pool of the split's own labeled pool."""
        return self.pool(n_train, self.labeled, include_labeled)

    def manifest(self) -> dict:
        if self.target_local is None:
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
        return {
            "format": MANIFEST_FORMAT,
            "split": self.id,
            "dataset_fingerprint": self.fingerprint,
            "n_source": self.n_source,
            "n_target": self.n_train - self.n_source,
            "labeled_target": self.target_local.tolist(),
            "hash": self.hash,
        }


def _content_hash(sid: str, fingerprint: str, balance: str, labeled: np.ndarray, valid: np.ndarray) -> str:
    blob = json.dumps([sid, fingerprint, balance, np.asarray(labeled).tolist(), np.asarray(valid).tolist()])
    return hashlib.sha256(blob.encode()).hexdigest()


def _parse(m: dict) -> Split:
    """The split of a manifest's JSON; a domain-adaptation manifest is the one with ``labeled_target``."""
    if "labeled_target" in m:
        n_source = int(m["n_source"])
        local = np.asarray(m["labeled_target"], dtype=np.int64)
        return Split.domain_adaptation(
            m["split"], local, n_source, n_source + int(m["n_target"]), m["dataset_fingerprint"]
        )
    return Split(
        id=m["split"],
        labeled=np.asarray(m["labeled"], dtype=np.int64),
        valid=np.asarray(m["valid"], dtype=np.int64),
        fingerprint=m["dataset_fingerprint"],
        class_balance=m["class_balance"],
    )


def manifest_path(manifest_dir: Path, sid: SplitId | DASplitId | str, class_balance: str = "balanced") -> Path:
    suffix = "" if class_balance == "balanced" else f".{class_balance}"
    return Path(manifest_dir) / f"{sid}{suffix}.json"


def read_manifest(path: Path, ds: ImageDataset) -> Split:
    """Load a manifest of either setting and verify its own hash and that it was made from exactly this dataset
    (fingerprint)."""
    try:
        m = json.loads(path.read_text())
        split = _parse(m)
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


def read_or_draw(path: Path | None, sid: object, ds: ImageDataset, draw: Callable[[], Split], write: bool) -> Split:
    """The split ``sid``: read from its manifest at ``path`` if it exists (verified), else drawn and saved once."""
    if path is not None and path.exists():
        split = read_manifest(path, ds)
        if split.id != str(sid):
            raise DataError(f"split manifest {path} holds split {split.id}, not {sid}")
        return split
    split = draw()
    if path is not None and write:
        atomic_write_text(path, json.dumps(split.manifest(), indent=1) + "\n")
    return split


def get_split(
    ds: ImageDataset,
    sid: SplitId,
    class_balance: str = "balanced",
    manifest_dir: Path | None = None,
    write: bool = True,
) -> Split:
    """The SSL split ``sid`` of ``ds``: read from its manifest if one exists (verified), else drawn and saved once."""
    path = manifest_path(manifest_dir, sid, class_balance) if manifest_dir is not None else None

    def draw() -> Split:
        labeled, valid = draw_split(ds.train_labels.numpy(), ds.num_classes, sid, class_balance)
        return Split(str(sid), labeled, valid, ds.fingerprint(), class_balance)

    return read_or_draw(path, sid, ds, draw, write)


def draw_da_split(ds: ImageDataset, sid: DASplitId) -> Split:
    """k target images per class: the class-balanced draw of SSL splits (docs/reference/common.md#label-splits) on the
    target's training labels."""
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
    return Split.domain_adaptation(str(sid), local, ds.n_source, len(ds.train_labels), ds.fingerprint())


def get_da_split(ds: ImageDataset, sid: DASplitId, manifest_dir: Path | None = None, write: bool = True) -> Split:
    """The split ``sid`` of the pair ``ds``: read from its manifest if one exists (verified), else drawn and saved."""
    path = manifest_path(manifest_dir, sid) if manifest_dir is not None else None
    return read_or_draw(path, sid, ds, lambda: draw_da_split(ds, sid), write)


def get_run_split(ds: ImageDataset, cfg: DataConfig, seed: int, manifest_dir: Path | None, write: bool = True) -> Split:
    """The split of one run in any setting (manifests under ``manifest_dir``)."""
    sid = run_split_id(cfg, seed)
    if isinstance(sid, DASplitId):
        return get_da_split(ds, sid, manifest_dir, write)
    return get_split(ds, sid, cfg.class_balance, manifest_dir, write)
