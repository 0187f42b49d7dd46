"""Acquisition for active learning: confidence scores as pure functions plus one shared selector (MMA,
docs/algorithms/mma.md#acquisition).

Song, Berthelot and Rostamizadeh, "Combining MixMatch and Active Learning for Better Accuracy with Fewer
Labels", arXiv 1912.00594; behaviour of google-research/mma ``grow_labeled`` as described in
docs/algorithms/mma.md#acquisition. Grammar: ``random`` or ``<measure>[.aug]-<diversification>[-embd]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ssl_bench.errors import ConfigError

MEASURES = ("max", "diff2", "entropy", "std")
DIVERSIFICATIONS = ("direct", "kmeanprop", "id")
_GRAMMAR = re.compile(r"^(?P<measure>[a-z0-9]+)(?P<aug>\.aug)?-(?P<div>[a-z]+)(?P<embd>-embd)?$")


def confidence(probs: np.ndarray, measure: str) -> np.ndarray:
    """Per-sample confidence (lower = selected first): max p, top-2 margin, std over classes, or −entropy."""
    p = np.asarray(probs, dtype=np.float64)
    if measure == "max":
        return p.max(axis=1)
    if measure == "diff2":
        top2 = np.sort(p, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if measure == "std":
        return p.std(axis=1)
    if measure == "entropy":
        return (p * np.log(np.clip(p, 1e-12, None))).sum(axis=1)  # −H(p)
    raise ConfigError(f"unknown acquisition measure {measure!r}; valid: {', '.join(MEASURES)}")


def uncertainty(probs: np.ndarray, measure: str) -> np.ndarray:
    """Information-density weight: 1 − confidence for max/diff2, entropy for entropy (docs/algorithms/mma.md#acquisition
    ``id``)."""
    if measure == "entropy":
        return -confidence(probs, "entropy")
    if measure in ("max", "diff2"):
        return 1.0 - confidence(probs, measure)
    raise ConfigError(
        f"acquisition measure {measure!r} cannot be combined with id (the reference allows max, diff2, entropy)"
    )


def cosine_distance_mean(features: np.ndarray) -> np.ndarray:
    """Average cosine distance of every sample to all samples (pixels or embeddings, flattened)."""
    f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    f = f / np.clip(np.linalg.norm(f, axis=1, keepdims=True), 1e-12, None)
    return 1.0 - (f @ f.mean(axis=0))  # mean_j (1 − cos(f_i, f_j)) = 1 − f_i · mean_j f_j


@dataclass(frozen=True)
class Acquisition:
    """A parsed acquisition name."""

    name: str
    measure: str | None  # None for random
    aug: bool = False  # average predictions over K weak augmentations (the reference parses but drops it)
    diversification: str = "direct"
    embedding: bool = False  # k-means / density on the model's embeddings instead of pixels

    @classmethod
    def parse(cls, name: str) -> Acquisition:
        if name == "random":
            return cls(name, None)
        m = _GRAMMAR.match(name)
        if not m:
            raise ConfigError(
                f"invalid acquisition {name!r}; use random or <measure>[.aug]-<diversification>[-embd] with measure "
                f"in {', '.join(MEASURES)} and diversification in {', '.join(DIVERSIFICATIONS)}, e.g. diff2.aug-direct"
            )
        if m["measure"] not in MEASURES:
            raise ConfigError(f"unknown acquisition measure {m['measure']!r} in {name!r}; valid: {', '.join(MEASURES)}")
        if m["div"] not in DIVERSIFICATIONS:
            raise ConfigError(f"unknown diversification {m['div']!r} in {name!r}; valid: {', '.join(DIVERSIFICATIONS)}")
        if m["div"] == "id" and m["measure"] == "std":
            raise ConfigError(f"acquisition {name!r}: std cannot be combined with id (as in the reference)")
        return cls(name, m["measure"], bool(m["aug"]), m["div"], bool(m["embd"]))


def kmeans_quota(labels: np.ndarray, n_clusters: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Samples to take per cluster: round(k · cluster fraction), fixed up to sum to k
    (docs/algorithms/mma.md#acquisition ``kmeanprop``)."""
    sizes = np.bincount(labels, minlength=n_clusters)
    quota = np.round(k * sizes / sizes.sum()).astype(np.int64)
    quota = np.minimum(quota, sizes)
    while quota.sum() > k:  # too many: take one from the largest quota
        quota[np.argmax(quota)] -= 1
    while quota.sum() < k:  # too few: add one to a random cluster that still has room
        room = np.flatnonzero(quota < sizes)
        quota[rng.choice(room)] += 1
    return quota


def select(
    acq: Acquisition,
    k: int,
    probs: np.ndarray | None,
    features: np.ndarray | None,
    rng: np.random.Generator,
    n_clusters: int = 20,
) -> np.ndarray:
    """Positions (into the candidate arrays) of the ``k`` samples to label next."""
    n = len(probs) if probs is not None else len(features) if features is not None else 0
    if acq.measure is None:
        if n == 0:
            raise ConfigError("random acquisition needs the candidate count")
        return np.sort(rng.choice(n, size=k, replace=False))
    if probs is None:
        raise ConfigError(f"acquisition {acq.name!r} needs predictions")
    if k > n:
        raise ConfigError(f"cannot select {k} images from a pool of {n}")
    if acq.diversification == "direct":
        conf = confidence(probs, acq.measure)
        return np.sort(np.argsort(conf, kind="stable")[:k])
    if features is None:
        raise ConfigError(f"acquisition {acq.name!r} needs features")
    if acq.diversification == "id":
        score = uncertainty(probs, acq.measure) * cosine_distance_mean(features)
        return np.sort(np.argsort(-score, kind="stable")[:k])
    from sklearn.cluster import MiniBatchKMeans

    flat = np.asarray(features, dtype=np.float64).reshape(n, -1)
    clusters = min(n_clusters, n)
    km = MiniBatchKMeans(
        n_clusters=clusters, batch_size=80, reassignment_ratio=0.1, random_state=0, max_iter=1000, n_init=3
    )  # the reference's settings (docs/algorithms/mma.md#acquisition)
    labels = km.fit_predict(flat)
    quota = kmeans_quota(labels, clusters, k, rng)
    conf = confidence(probs, acq.measure)
    picked: list[int] = []
    for c in range(clusters):
        members = np.flatnonzero(labels == c)
        picked.extend(members[np.argsort(conf[members], kind="stable")[: quota[c]]])
    return np.sort(np.asarray(picked, dtype=np.int64))
