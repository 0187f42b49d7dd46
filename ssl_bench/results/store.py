"""Storage of run records: one JSON file per run, written atomically under ``runs/``; reading every file back with
the reason for each one that is not a valid record; and moving an unreadable record aside (never deleting it) so
that its run trains again."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_bench.atomic_write import atomic_write_text, remove_stale_temps
from ssl_bench.results.layout import RUNS_DIR, record_path
from ssl_bench.results.record import RECORD_KEYS, check_record


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


@dataclass(frozen=True)
class Scan:
    """Every file under ``runs/``: the valid records with their paths, and the files that are not (with why)."""

    records: list[tuple[Path, dict[str, Any]]]
    unreadable: list[tuple[Path, str]]


def scan_records(results_dir: Path) -> Scan:
    """Read every ``*.json`` under ``<results_dir>/runs/``: each must be a run record of the schema."""
    good: list[tuple[Path, dict[str, Any]]] = []
    bad: list[tuple[Path, str]] = []
    root = Path(results_dir) / RUNS_DIR
    if not root.is_dir():
        return Scan(good, bad)
    for path in sorted(root.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except UnicodeDecodeError:
            bad.append((path, "not UTF-8 text"))
            continue
        except json.JSONDecodeError as exc:
            bad.append((path, f"not valid JSON ({exc.msg} at line {exc.lineno})"))
            continue
        except ValueError as exc:  # a number of more digits than int() reads (sys.get_int_max_str_digits)
            bad.append((path, f"not valid JSON ({exc})"))
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
