"""The run record's schema: its stable keys and version, what a finished run measured (``TrainResult``), how a
record is built from it and why a record read back is not one. Other tools read these keys: the schema lives apart
from where records are stored and how they are read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_bench.config import RunConfig
from ssl_bench.data.pairs import SETTINGS
from ssl_bench.data.splits import Split
from ssl_bench.identity import HASH_VERSION
from ssl_bench.registry import is_file_name
from ssl_bench.results.provenance import git_state, host_info, library_versions, now_iso

# the stable record interface (docs/results.md#records): other tools read these keys
RECORD_KEYS = (
    "algorithm", "dataset", "split", "split_hash", "n_labels", "seed", "setting", "source", "target", "round",
    "acquisition", "acc_median", "median_k", "acc_final", "acc_history", "model", "steps", "images_seen", "wall_s",
    "steps_per_s", "device", "config", "config_hash", "git_commit", "git_dirty", "versions", "created_at",
)  # fmt: skip

# the record schema's version: records written before the field existed are version 1
RECORD_VERSION = 1


@dataclass(frozen=True)
class TrainResult:
    """What a finished run (or one active-learning round) measured; the record adds identity and provenance."""

    acc_history: list[tuple[int, float]]  # (step, test accuracy of the EMA model) at every evaluation
    # the headline: median of the last median_k evaluations (docs/reference/common.md#reporting-protocol)
    acc_median: float
    acc_final: float
    median_k: int
    acc_raw_final: float  # the live (non-EMA) model at the end
    steps: int
    images_seen: int  # labeled images seen (steps x batch size)
    wall_s: float
    device: str
    augmentation: str  # the policies the run really used, e.g. "ctaugment+weak"
    flip: bool  # whether its weak views flipped horizontally (augment.flip resolved against the dataset)
    n_unlabeled: int  # size of the unlabeled pool
    speed: dict[str, Any]  # the speed switches as resolved for the device (train/switches.py)
    world_size: int = 1  # processes that trained the run together (torchrun; train/distributed.py)
    devices: list[str] = field(default_factory=list)  # the device of each rank, e.g. ["NVIDIA H200", ...]


def make_record(
    run: RunConfig,
    chash: str,
    split: Split,
    result: TrainResult,
    results_dir: Path,
    rnd: int | None = None,
    n_labels: int | None = None,
) -> dict[str, Any]:
    """The record of a finished run (or of active-learning round ``rnd``, with ``n_labels`` labels then)."""
    commit, dirty = git_state(results_dir)
    data = run.data
    domain_adaptation = data.setting != "ssl"
    if n_labels is None:
        n_labels = len(split.target_labeled) if domain_adaptation else data.n_labels
    return {
        "record_version": RECORD_VERSION,
        "algorithm": run.algorithm.name,
        "dataset": run.dataset,
        "split": split.id,
        "split_hash": split.hash,
        "n_labels": n_labels,
        "seed": run.seed,
        "setting": data.setting,
        "source": data.source if domain_adaptation else None,
        "target": data.target if domain_adaptation else None,
        "target_labels_per_class": data.target_labels if domain_adaptation else None,
        "round": rnd,
        "acquisition": run.acquisition,
        "acc_median": result.acc_median,
        "median_k": result.median_k,
        "acc_final": result.acc_final,
        "acc_history": [list(h) for h in result.acc_history],
        "acc_raw_final": result.acc_raw_final,
        "n_unlabeled": result.n_unlabeled,
        "model": run.model.name,
        "augmentation": result.augmentation,
        "flip": result.flip,
        "steps": result.steps,
        "images_seen": result.images_seen,
        "wall_s": round(result.wall_s, 3),
        "steps_per_s": round(result.steps / max(result.wall_s, 1e-9), 3),
        "device": result.device,
        "speed": result.speed,
        "world_size": result.world_size,
        "devices": list(result.devices),
        "recipe": dict(run.recipe),  # name and description, outside the config hash
        "plugins": [dict(p) for p in run.plugins],  # outside code behind the run's components, with source sha256
        "config": run.to_dict(),
        "config_hash": chash,
        "config_hash_version": HASH_VERSION,  # how chash was computed (identity.py); records without it are version 1
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": library_versions(),
        "host": host_info(),
        "created_at": now_iso(),
    }


_SECTIONS = ("data", "model", "augment", "train", "active", "algorithm")  # the tables of a record's config


def check_record(rec: Any) -> str | None:
    """Why ``rec`` is not a valid run record (one short reason), or None if it follows the schema."""
    if not isinstance(rec, dict):
        return f"not a JSON object but {type(rec).__name__}"
    version = rec.get("record_version", 1)
    if not isinstance(version, int) or not 1 <= version <= RECORD_VERSION:
        return f"record_version {version!r} is not one this ssl_bench reads (1..{RECORD_VERSION})"
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    acc = rec["acc_median"]
    if isinstance(acc, bool) or not isinstance(acc, int | float) or not 0.0 <= acc <= 1.0:
        return f"acc_median {acc!r} is not an accuracy in [0, 1]"
    for key, least in (("n_labels", 0), ("seed", 0), ("steps", 0), ("median_k", 1)):
        value = rec[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            return f"{key} {value!r} is not an integer >= {least}"
    wall = rec["wall_s"]
    if isinstance(wall, bool) or not isinstance(wall, int | float) or not 0 <= wall < float("inf"):
        return f"wall_s {wall!r} is not a number of seconds"
    if rec["setting"] not in SETTINGS:
        return f"setting {rec['setting']!r} is none of {', '.join(SETTINGS)}"
    config = rec["config"]
    if not isinstance(config, dict) or any(not isinstance(v, dict) for k, v in config.items() if k in _SECTIONS):
        return "config is not a table of sections"
    for key, kind, word in (
        ("recipe", dict, "a table"),
        ("augmentation", str, "a string"),
        ("n_unlabeled", int, "an integer"),
    ):
        value = rec.get(key)  # optional: older records lack them
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            return f"{key} {value!r} is not {word}"
    h = rec["config_hash"]
    if not isinstance(h, str) or len(h) < 12:
        return f"config_hash {h!r} is not a config hash"
    hist = rec["acc_history"]
    if not isinstance(hist, list) or any(not isinstance(x, list) or len(x) != 2 for x in hist):
        return "acc_history is not a list of [step, accuracy] pairs"
    for key in ("dataset", "algorithm", "split", "model"):
        value = rec[key]
        if not isinstance(value, str) or not value:
            return f"{key} {value!r} is not a name"
        if key != "model" and not is_file_name(value):  # folders and files of runs/
            return f"{key} {value!r} is not a name"
    return None
