"""A run's identity: the config hash of everything in its resolved config that changes what it computes.

The hash is versioned: ``HASH_VERSION`` enters the hashed values and every record states the version it was hashed
with (``config_hash_version``; records without the key are version 1, whose hash left out keys added after the
first records). Changing how the hash is computed means a new version and a migration of the committed records,
never a table of exceptions, so the rule stays one line: every semantic key, as resolved.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssl_bench.config import RunConfig

HASH_VERSION = 2

# keys that change where or how visibly a run executes, not what it computes: left out of the config hash, so the
# same run on another device, with other threads or without a progress bar, is the same run
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


def semantic_values(run: RunConfig) -> dict[str, Any]:
    """The resolved config as records store it (``RunConfig.to_dict``) without the ``NON_SEMANTIC`` keys."""
    values = run.to_dict()
    for section, keys in NON_SEMANTIC.items():
        for key in keys:
            values[section].pop(key, None)
    return values


def run_hash(run: RunConfig) -> str:
    """The run's identity: the config hash of its semantic values and the hash version."""
    return config_hash({"config_hash_version": HASH_VERSION, **semantic_values(run)})


def config_hash(values: dict[str, Any]) -> str:
    """Stable hash of a resolved config: sha256 of its canonical JSON (sorted keys, no spaces, ASCII)."""
    blob = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
