"""Split ids, the names of splits in both settings: parsed from and printed to the text that names a manifest.

SSL splits are ``dataset.seed@labels-valid`` (the reference's naming, docs/reference/common.md#label-splits); the
domain-adaptation splits of AdaMatch's settings (docs/algorithms/adamatch.md) are ``source-target.seed@uda`` or
``@ssdaK``. An id names the draw completely, so the same id always names the same indices of the same data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ssl_bench.config import DataConfig, pair_name
from ssl_bench.data.pairs import get_pair
from ssl_bench.errors import SplitError
from ssl_bench.registry import DATASETS

_SPLIT_RE = re.compile(r"^(?P<dataset>[A-Za-z0-9_]+)\.(?P<seed>\d+)@(?P<labels>\d+)-(?P<valid>\d+)$")
_DA_SPLIT_RE = re.compile(
    r"^(?P<source>[A-Za-z0-9_:]+)-(?P<target>[A-Za-z0-9_:]+)\.(?P<seed>\d+)@(?:uda|ssda(?P<k>[1-9]\d*))$"
)


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


@dataclass(frozen=True)
class DASplitId:
    """``source-target.seed@uda`` or ``source-target.seed@ssdaK`` (K labeled target images per class)."""

    source: str
    target: str
    seed: int
    target_labels: int

    @property
    def setting(self) -> Literal["uda", "ssda"]:
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


def run_split_id(cfg: DataConfig, seed: int) -> SplitId | DASplitId:
    """The id of the split a run of ``cfg`` with ``seed`` trains on, in its setting."""
    if cfg.setting == "ssl":
        return SplitId(cfg.dataset, seed, cfg.n_labels, cfg.n_valid)
    return DASplitId(cfg.source, cfg.target, seed, cfg.target_labels)
