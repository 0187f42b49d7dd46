"""One-off: move the committed records of leaderboard/ from config hash version 1 to version 2 (ssl_bench/identity.py).

For every record under leaderboard/runs/ the run is rebuilt from the record's stored ``config`` (``rebuild``: the
keys it lacks take the values that computed what the code did before they existed); its version-1 hash, computed
by the code below (the hash as it was before version 2), must equal the stored ``config_hash``, or nothing is
written: that would mean the rebuilt run is not the recorded one. Then the record gets the version-2 hash and
``config_hash_version: 2`` (right after ``config_hash``), and the file name its new hash prefix; no other byte
changes, which the script checks by writing each record back as the writer does (results.write_record:
``json.dumps(record, indent=1)``) and comparing with the file. The active-learning round logs under
leaderboard/splits/ are keyed by the same hash and move with it.

Run from the repository root: ``python scripts/migrate_config_hash_v2.py [leaderboard]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ssl_bench.algorithms import algorithm_config
from ssl_bench.config import ActiveConfig, AugmentConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from ssl_bench.identity import HASH_VERSION, NON_SEMANTIC, config_hash, run_hash
from ssl_bench.results import record_path
from ssl_bench.values import from_dict

# version 1: keys added after records existed were left out of the hash while they held the value that reproduces
# the older runs, and augment.flip was hashed as the bool it once was
V1_OMIT_IF_DEFAULT = {
    "data": {"n_unlabeled": 0, "setting": "ssl", "source": "", "target": "", "target_labels": 0, "channels": 0},
    "train": {
        "precision": "fp32",
        "memory_format": "contiguous",
        "compile": "none",
        "sync_bn": False,
        "decay_scope": "weights",
    },
}
V1_FLIP = {"dataset": True, "never": False}
V1_FLIP_FOLDER = {"always": True, "dataset": False, "never": False}


def v1_hash(run: RunConfig) -> str:
    values = run.to_dict()
    data = values["data"]
    if data["setting"] == "ssl":
        folder = data["dataset"] == "folder"
    else:
        folder = any(d.startswith("folder:") for d in (data["source"], data["target"]))
    flip = values["augment"]["flip"]
    values["augment"]["flip"] = (V1_FLIP_FOLDER if folder else V1_FLIP).get(flip, flip)
    for section, keys in NON_SEMANTIC.items():
        for key in keys:
            values[section].pop(key, None)
    for section, defaults in V1_OMIT_IF_DEFAULT.items():
        for key, default in defaults.items():
            if values[section].get(key) == default:
                values[section].pop(key)
    return config_hash(values)


def rebuild(config: dict[str, Any]) -> RunConfig:
    """The run a record's stored config describes. A key the record lacks did not exist when it was written: it takes
    the value that computes what the code did then where version 1 names one (train.precision "fp32" and
    train.memory_format "contiguous", where today's default is "auto"), today's default otherwise."""
    active = dict(config.get("active") or {})
    acquisition = active.pop("acquisition", None)
    data, train = ({**V1_OMIT_IF_DEFAULT[s], **config[s]} for s in ("data", "train"))
    return RunConfig(
        seed=config["seed"],
        data=from_dict(DataConfig, data, "data"),
        model=from_dict(ModelConfig, config["model"], "model"),
        augment=from_dict(AugmentConfig, config["augment"], "augment"),
        train=from_dict(TrainConfig, train, "train"),
        algorithm=algorithm_config(config["algorithm"]),
        active=from_dict(ActiveConfig, active, "active"),
        acquisition=acquisition,
        plugins=[dict(p) for p in config.get("plugins", [])],
    )


def with_version(record: dict[str, Any], new_hash: str) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        out[key] = new_hash if key == "config_hash" else value
        if key == "config_hash":
            out["config_hash_version"] = HASH_VERSION
    return out


def dumped(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=1, sort_keys=False) + "\n"  # results.write_record and active.loop.RoundLog


def main(root: Path) -> None:
    moves: list[tuple[Path, Path, str]] = []  # (old path, new path, new text)
    renamed: dict[str, str] = {}  # old config hash -> new
    for path in sorted((root / "runs").rglob("*.json")):
        text = path.read_text()
        record = json.loads(text)
        if dumped(record) != text:
            sys.exit(f"{path}: not in the writer's format; stopping before any change")
        if "config_hash_version" in record:
            sys.exit(f"{path}: already states a config hash version; stopping before any change")
        if record_path(root, record) != path:
            sys.exit(f"{path}: not where the writer puts it ({record_path(root, record)}); stopping")
        run = rebuild(record["config"])
        old = v1_hash(run)
        if old != record["config_hash"]:
            sys.exit(f"{path}: version-1 hash of its config is {old}, not its config_hash; stopping")
        new = run_hash(run)
        if renamed.setdefault(old, new) != new:
            sys.exit(f"{path}: config hash {old} maps to two new hashes; stopping")
        migrated = with_version(record, new)
        moves.append((path, record_path(root, migrated), dumped(migrated)))
    for path in sorted((root / "splits").glob("*.active-*.json")):
        text = path.read_text()
        log = json.loads(text)
        if dumped(log) != text:
            sys.exit(f"{path}: not in the writer's format; stopping before any change")
        old = log["config_hash"]
        if old not in renamed or not path.name.endswith(f".active-{old[:12]}.json"):
            sys.exit(f"{path}: its config hash is no committed record's; stopping before any change")
        new = renamed[old]
        name = path.name.removesuffix(f"{old[:12]}.json") + f"{new[:12]}.json"
        moves.append((path, path.with_name(name), dumped({**log, "config_hash": new})))
    targets = [new for _, new, _ in moves]
    if len(set(targets)) != len(targets):
        sys.exit("two files would move to one name; stopping before any change")
    for old_path, new_path, text in moves:
        subprocess.run(["git", "mv", str(old_path), str(new_path)], check=True)
        new_path.write_text(text)
    print(f"{len(moves)} files moved to config hash version {HASH_VERSION} ({len(renamed)} runs)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "leaderboard"))
