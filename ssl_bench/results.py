"""Run records: one JSON object per finished run, with its provenance, stored atomically under the results dir.

Also the layout of a results directory: records under ``runs/``, split manifests under ``splits/``, checkpoints
under ``.checkpoints/`` and TensorBoard scalars under ``tensorboard/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ssl_bench.config import RunConfig
from ssl_bench.data.pairs import SETTINGS
from ssl_bench.data.splits import DASplit, Split
from ssl_bench.errors import ConfigError, ResultsDirError
from ssl_bench.identity import HASH_VERSION
from ssl_bench.locks import LOCK_DIR
from ssl_bench.registry import is_file_name
from ssl_bench.utils import atomic_write_text, cpu_fields, creation_problem, native_bf16_cpu, remove_stale_temps

# the stable record interface (design.md, "Results and leaderboard"): other tools read these keys
RECORD_KEYS = (
    "algorithm", "dataset", "split", "split_hash", "n_labels", "seed", "setting", "source", "target", "round",
    "acquisition", "acc_median", "median_k", "acc_final", "acc_history", "model", "steps", "images_seen", "wall_s",
    "steps_per_s", "device", "config", "config_hash", "git_commit", "git_dirty", "versions", "created_at",
)  # fmt: skip

# the record schema's version: records written before the field existed are version 1
RECORD_VERSION = 1

RUNS_DIR = "runs"
SPLITS_DIR = "splits"
CHECKPOINT_DIR = ".checkpoints"
TENSORBOARD_DIR = "tensorboard"


RESULTS_FOLDERS = (RUNS_DIR, SPLITS_DIR, CHECKPOINT_DIR, LOCK_DIR)  # what a run writes below the results directory


def check_results_dir(results_dir: Path) -> None:
    """Refuse a results directory that is a file, lies below a file, holds a file where one of its folders goes, or
    cannot be written (before anything runs)."""
    path = Path(results_dir)
    if path.exists() and not path.is_dir():
        raise ResultsDirError(f"results directory {path} is a file, not a directory; choose another --results-dir")
    for name in RESULTS_FOLDERS:
        if (path / name).exists() and not (path / name).is_dir():
            raise ResultsDirError(f"{path / name} is a file where the results directory's folder {name}/ goes; move it")
    problem = creation_problem(path)
    if problem is None:
        return
    where, reason = problem
    if reason == "is a file":
        raise ResultsDirError(f"results directory {path} cannot be created: {where} is a file")
    if reason == "permission denied":
        raise ResultsDirError(f"results directory {path} is not writable ({where}: permission denied)")
    raise ResultsDirError(f"results directory {path} cannot be created ({where}: {reason})")


def require_results_dir(results_dir: Path) -> None:
    """Refuse, for a command that reads records, a results directory that is missing or is a file."""
    path = Path(results_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"results directory {path} is a file, not a directory; pass the --results-dir a run wrote")
    if not path.is_dir():
        raise ConfigError(f"results directory {path} does not exist (run a recipe first, or check the path)")


def manifest_dir(results_dir: Path) -> Path:
    """Where split manifests (and active-learning round logs) live."""
    return Path(results_dir) / SPLITS_DIR


def checkpoint_path(results_dir: Path, config_hash: str) -> Path:
    """The one checkpoint of the run with this config hash, kept until its record is written."""
    return Path(results_dir) / CHECKPOINT_DIR / f"{config_hash[:16]}.pt"


def remove_checkpoint(path: Path) -> None:
    """Delete a finished run's checkpoint and any partial one a killed save left beside it."""
    Path(path).unlink(missing_ok=True)
    remove_stale_temps(path)


def tensorboard_dir(results_dir: Path, config_hash: str) -> Path:
    return Path(results_dir) / TENSORBOARD_DIR / config_hash[:12]


@dataclass(frozen=True)
class TrainResult:
    """What a finished run (or one active-learning round) measured; the record adds identity and provenance."""

    acc_history: list[tuple[int, float]]  # (step, test accuracy of the EMA model) at every evaluation
    acc_median: float  # the headline: median of the last median_k evaluations (§1.8)
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
    speed: dict[str, Any]  # the speed switches as resolved for the device (train/speed.py)
    world_size: int = 1  # processes that trained the run together (torchrun; train/distributed.py)
    devices: list[str] = field(default_factory=list)  # the device of each rank, e.g. ["NVIDIA H200", ...]


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("ssl_bench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def host_info() -> dict[str, Any]:
    """The CPU a run's numbers came from, as far as its kernels can tell: the same commit, config and thread count
    give other numbers on another CPU (other vector units, other kernels, another order of float sums), so a
    record names its CPU. Linux's /proc/cpuinfo where there is one; torch's CPU capability everywhere."""
    import torch

    info: dict[str, Any] = {"cpu": platform.processor() or "unknown", "cores": os.cpu_count()}
    fields = cpu_fields()
    if "model name" in fields:
        info["cpu"] = fields["model name"]
        info["cpu_id"] = " ".join(f"{k} {fields.get(k, '?')}" for k in ("cpu family", "model", "stepping"))
    info["native_bf16"] = native_bf16_cpu()  # what precision = auto went by
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


@dataclass(frozen=True)
class Checkout:
    """The git checkout this package runs from, as read at one moment: its HEAD and its changed tracked paths."""

    top: Path
    head: str
    changed: tuple[str, ...]

    def dirty(self, results_dir: Path | None) -> bool:
        """Whether a tracked file outside ``leaderboard/`` and ``results_dir`` differs from HEAD."""
        skip = [Path("leaderboard")]
        if results_dir is not None:
            try:
                skip.append(Path(results_dir).resolve().relative_to(self.top))
            except ValueError:
                pass
        return any(not any(Path(p).is_relative_to(s) for s in skip) for p in self.changed)


def read_checkout(where: Path | None = None) -> Checkout | None:
    """The checkout holding ``where`` (default: this package) now, from ``git rev-parse`` and ``git status``; None
    outside a git checkout or without git."""
    here = Path(where) if where is not None else Path(__file__).resolve().parent

    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=here).strip())
        head = git("rev-parse", "HEAD", cwd=top).strip()
        # --no-optional-locks: a status of ours never holds .git/index.lock, so a user's own git command run at the
        # same moment (a commit during a long grid) cannot fail on it
        entries = git("--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=no", cwd=top)
        entries = entries.split("\0")
    except (OSError, subprocess.SubprocessError):
        return None
    changed, i = [], 0
    while i < len(entries):
        entry = entries[i]
        if entry:
            changed.append(entry[3:])
            if entry[0] in "RC":  # a rename or copy: its source path follows
                i += 1
                changed.append(entries[i])
        i += 1
    return Checkout(top, head, tuple(changed))


_UNREAD = object()
_code_checkout: Checkout | None | object = _UNREAD


def note_code_checkout() -> None:
    """Read the checkout once per process, when it first trains: the code this process imported and runs. Records
    name that commit (``git_state``), so a commit or an edit during a long grid cannot make a record name code that
    did not train it."""
    global _code_checkout
    if _code_checkout is _UNREAD:
        _code_checkout = read_checkout()


def git_state(results_dir: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the code this process runs: the commit it started training at (``note_code_checkout``;
    otherwise now), dirty if any tracked file outside ``leaderboard/`` and ``results_dir`` differed from it then, or
    differs now, or HEAD has moved since. Records and generated tables do not count as dirty."""
    now = read_checkout()
    start = now if _code_checkout is _UNREAD else _code_checkout
    if start is None or now is None:
        return None, None
    assert isinstance(start, Checkout)
    return start.head, start.dirty(results_dir) or now.dirty(results_dir) or now.head != start.head


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def make_record(
    run: RunConfig,
    chash: str,
    split: Split | DASplit,
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


def record_path(results_dir: Path, record: dict[str, Any]) -> Path:
    """runs/<dataset>/<algorithm>/<split>[-r<round>]-<config hash prefix>.json: one file per run, no conflicts."""
    rnd = "" if record.get("round") is None else f"-r{int(record['round']):03d}"
    name = f"{record['split']}{rnd}-{record['config_hash'][:12]}.json"
    return inside(Path(results_dir), RUNS_DIR, str(record["dataset"]), str(record["algorithm"]), name)


def inside(root: Path, *parts: str) -> Path:
    """``root/part/...``, refusing any part that is empty, absolute, ``.``/``..`` or holds a path separator, so a
    name from a recipe, plugin or record can never place a file outside ``root``."""
    for part in parts:
        if not is_file_name(part):
            raise ResultsDirError(f"unsafe name {part!r} in a results path: names may not hold '/', '\\' or be '..'")
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ResultsDirError(f"path {path} would leave the results directory {root}")
    return path


def write_record(results_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` atomically; the caller holds the run's lock, so a temp file of the same record is left by
    a killed earlier attempt and is removed."""
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"record lacks keys {missing}")
    path = record_path(results_dir, record)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False) + "\n")
    remove_stale_temps(path)
    return path


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


@dataclass(frozen=True)
class Scan:
    """Every file under ``runs/``: the valid records with their paths, and the files that are not (with why)."""

    records: list[tuple[Path, dict[str, Any]]]
    unreadable: list[tuple[Path, str]]


def scan_records(results_dir: Path) -> Scan:
    """Read every ``*.json`` under ``<results_dir>/runs/``: each must be a run record of the schema."""
    good, bad = [], []
    root = Path(results_dir) / RUNS_DIR
    if not root.is_dir():
        return Scan(good, bad)
    for path in sorted(root.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except UnicodeDecodeError:
            bad.append((path, "not UTF-8 text"))
            continue
        except ValueError as exc:
            bad.append((path, f"not valid JSON ({exc.msg} at line {exc.lineno})"))
            continue
        except OSError as exc:
            bad.append((path, f"cannot be read ({exc.strerror or exc})"))
            continue
        reason = check_record(rec)
        if reason is None:
            good.append((path, rec))
        else:
            bad.append((path, reason))
    return Scan(good, bad)


def record_files(results_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(path, record) of every valid run record under ``results_dir``."""
    return scan_records(results_dir).records


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """Every valid record under ``results_dir``."""
    return [rec for _, rec in record_files(results_dir)]


def quarantine(results_dir: Path, config_hash: str, log: Callable[[str], None]) -> list[Path]:
    """Move every unreadable record file of the run ``config_hash`` aside (never delete it) and say so; returns the
    new paths. The run then trains again and writes a fresh record."""
    moved = []
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for path, reason in scan_records(results_dir).unreadable:
        if not re.search(rf"-{config_hash[:12]}\.json$", path.name):
            continue
        aside = path.with_name(f"{path.name}.unreadable-{stamp}")
        path.replace(aside)
        log(f"record {path} is unreadable ({reason}): moved aside to {aside.name}; the run trains again")
        moved.append(aside)
    return moved
