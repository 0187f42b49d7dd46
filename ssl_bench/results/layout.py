"""The layout of a results directory: records under ``runs/``, split manifests under ``splits/``, checkpoints under
``.checkpoints/``, TensorBoard scalars under ``tensorboard/`` and locks under ``.locks/``; the checks that a results
directory can be written (or read) before anything runs, and the guard that no name places a file outside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_bench.atomic_write import remove_stale_temps
from ssl_bench.errors import ConfigError, ResultsDirError
from ssl_bench.locks import LOCK_DIR
from ssl_bench.registry import is_file_name
from ssl_bench.writable import creation_problem

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
