"""A run's identity: the config hash of everything in its resolved config that changes what it computes."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssl_bench.config import RunConfig


# keys that change where or how visibly a run executes, not what it computes: left out of the config hash
NON_SEMANTIC = {
    "data": ("root", "download"),
    "train": (
        "device",
        "progress",
        "tensorboard",
        "checkpoint_every",
        "eval_batch_size",
        "cpu_malloc",
        "threads",
        "divergence",
        "chance_evals",
        "chance_warmup",
        "chance_margin",
    ),  # fmt: skip
}
# keys added after records existed, left out of the hash while they hold the value that reproduces older runs
OMIT_IF_DEFAULT = {
    "data": {"n_unlabeled": 0, "setting": "ssl", "source": "", "target": "", "target_labels": 0, "channels": 0},
    "train": {
        "precision": "fp32",
        "memory_format": "contiguous",
        "compile": "none",
        "sync_bn": False,
        "decay_scope": "weights",
    },
}


# augment.flip as the config hash sees it: the bool of the days it was one (true = flip where the dataset allows
# it, false = never), wherever a choice computes what that bool did, so those runs keep their hashes. A folder
# dataset allowed flips then and does not now: there "dataset" computes what false did and "always" what true did.
LEGACY_FLIP = {"dataset": True, "never": False}
LEGACY_FLIP_FOLDER = {"always": True, "dataset": False, "never": False}


def _hashed_flip(data: dict[str, Any], flip: str) -> str | bool:
    if data["setting"] == "ssl":
        folder = data["dataset"] == "folder"
    else:
        folder = any(d.startswith("folder:") for d in (data["source"], data["target"]))
    return (LEGACY_FLIP_FOLDER if folder else LEGACY_FLIP).get(flip, flip)


def run_hash(run: RunConfig) -> str:
    """The run's identity: the config hash of everything that changes what it computes."""
    values = run.to_dict()
    values["augment"]["flip"] = _hashed_flip(values["data"], values["augment"]["flip"])
    for section, keys in NON_SEMANTIC.items():
        for key in keys:
            values[section].pop(key, None)
    for section, defaults in OMIT_IF_DEFAULT.items():
        for key, default in defaults.items():
            if values[section].get(key) == default:
                values[section].pop(key)
    return config_hash(values)


def config_hash(values: dict[str, Any]) -> str:
    """Stable hash of a resolved config: sha256 of its canonical JSON."""
    blob = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
