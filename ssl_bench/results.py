"""Run records: one JSON object per finished run, with its provenance, stored atomically under the results dir."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from ssl_bench.utils import atomic_write_text

# the stable record interface (design.md, "Results and leaderboard"): other tools read these keys
RECORD_KEYS = (
    "algorithm", "dataset", "split", "split_hash", "n_labels", "seed", "setting", "source", "target", "round",
    "acquisition", "acc_median", "median_k", "acc_final", "acc_history", "model", "steps", "images_seen", "wall_s",
    "steps_per_s", "device", "config", "config_hash", "git_commit", "git_dirty", "versions", "created_at",
)  # fmt: skip

RUNS_DIR = "runs"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("ssl_bench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_state(results_dir: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout this package runs from; records and generated tables do not count as dirty."""
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=top, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        excludes = [":(exclude)leaderboard"]
        if results_dir is not None:
            try:
                excludes.append(f":(exclude){Path(results_dir).resolve().relative_to(top)}")
            except ValueError:
                pass
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excludes],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def record_path(results_dir: Path, record: dict[str, Any]) -> Path:
    """runs/<dataset>/<algorithm>/<split>[-r<round>]-<config hash prefix>.json: one file per run, no conflicts."""
    rnd = "" if record.get("round") is None else f"-r{int(record['round']):03d}"
    name = f"{record['split']}{rnd}-{record['config_hash'][:12]}.json"
    return Path(results_dir) / RUNS_DIR / record["dataset"] / record["algorithm"] / name


def write_record(results_dir: Path, record: dict[str, Any]) -> Path:
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"record lacks keys {missing}")
    path = record_path(results_dir, record)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False) + "\n")
    return path


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """Every record under ``results_dir`` (files that are not run records are ignored)."""
    out = []
    root = Path(results_dir)
    if not root.is_dir():
        return out
    for path in sorted(root.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "algorithm" in rec and "acc_median" in rec and "config_hash" in rec:
            out.append(rec)
    return out
