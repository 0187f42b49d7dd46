"""``ssl-bench bench grid``: the wall time of one grid under several executors, so that a user can tell, on their
own machine and grid, whether worker processes or Ray pay for what they cost.

Each measurement is a fresh ``ssl-bench run`` process training the whole grid into an empty results directory,
as a user would start it, followed by the same command again, which finds every run recorded and skips it. The
executors take turns, and each round starts with another one, so a slow phase of a shared machine hits them all.

Beside the wall time it reads the CPU time the whole machine spent busy (Linux's ``/proc/stat``), which counts
what a process's own CPU times leave out: Ray's daemons and its worker processes. On C cores no executor finishes
a grid in less than busy CPU / C, which is what decides whether spreading a small grid over processes can pay off
(docs/grids.md#grids-ray-and-torchrun).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_bench.errors import ConfigError, SSLBenchError
from ssl_bench.results.store import load_records

# /proc/stat's first line: cpu user nice system idle iowait irq softirq steal ..., in clock ticks; busy is all
# but idle and iowait (guest time is already inside user)
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class Variant:
    executor: str
    workers: int

    @property
    def name(self) -> str:
        return f"{self.executor}:{self.workers}"


def parse_variants(text: str, executors: tuple[str, ...]) -> list[Variant]:
    """``"local:1,local:2,ray:2"`` -> the executors to compare, each ``EXECUTOR:WORKERS`` with EXECUTOR one of
    ``executors`` (``ssl-bench run --executor``'s), in that order."""
    out: list[Variant] = []
    for item in (part.strip() for part in text.split(",")):
        executor, _, workers = item.partition(":")
        if executor not in executors or not workers.isdigit() or int(workers) < 1:
            raise ConfigError(
                f"--executors: {item!r} is not EXECUTOR:WORKERS with EXECUTOR one of {', '.join(executors)} and "
                "WORKERS >= 1, e.g. local:1,local:2,ray:2"
            )
        variant = Variant(executor, int(workers))
        if variant in out:
            raise ConfigError(f"--executors names {variant.name} twice")
        out.append(variant)
    return out


def busy_seconds(stat: str | None = None) -> float | None:
    """CPU seconds the whole machine has spent busy since boot, from ``/proc/stat`` (or its text); None where
    there is none (not Linux)."""
    try:
        if stat is None:
            with open("/proc/stat") as f:
                stat = f.readline()
        ticks = [int(v) for v in stat.split()[1:9]]
        return sum(ticks[i] for i in BUSY_FIELDS) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _timed(command: list[str], what: str) -> tuple[float, float | None]:
    """(wall s, machine busy CPU s) of one command; a failed command is an error naming its last line."""
    cpu0, t0 = busy_seconds(), time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, cpu1 = time.perf_counter() - t0, busy_seconds()
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise SSLBenchError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no message'}")
    return wall, None if cpu0 is None or cpu1 is None else cpu1 - cpu0


def run_command(recipes: list[Path], overrides: list[str], plugins: list[str], variant: Variant,
                results_dir: Path, address: str | None) -> list[str]:  # fmt: skip
    """The ``ssl-bench run`` command line of one measurement."""
    command = [sys.executable, "-m", "ssl_bench.cli", "run", *map(str, recipes), "--results-dir", str(results_dir)]
    command += [f"--set={o}" for o in overrides] + [f"--plugin={p}" for p in plugins]
    command += ["--quiet", "--executor", variant.executor, "--workers", str(variant.workers)]
    return command + (["--address", address] if address and variant.executor == "ray" else [])


def bench_grid(recipes: list[Path], overrides: list[str], plugins: list[str], variants: list[Variant], n_runs: int,
               rounds: int, address: str | None = None, log=print) -> dict[str, Any]:  # fmt: skip
    """Time the grid of ``recipes`` (``n_runs`` runs) under each variant ``rounds`` times in turns; see the module
    docstring. Each fresh run must leave ``n_runs`` records, and its rerun must add none."""
    load = _load_average()
    rows: dict[str, dict[str, Any]] = {
        v.name: {"executor": v.executor, "workers": v.workers, "wall_s": [], "busy_cpu_s": [], "rerun_s": []}
        for v in variants
    }
    for r in range(rounds):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            with tempfile.TemporaryDirectory(prefix="ssl-bench-grid-") as tmp:
                results = Path(tmp)
                command = run_command(recipes, overrides, plugins, v, results, address)
                wall, cpu = _timed(command, f"{v.name}, round {r + 1}")
                found = len(load_records(results))
                if found != n_runs:
                    raise SSLBenchError(f"{v.name}, round {r + 1}: {found} records written, {n_runs} expected")
                rerun, _ = _timed(command, f"{v.name}, round {r + 1}, rerun")
                if len(load_records(results)) != n_runs:
                    raise SSLBenchError(f"{v.name}, round {r + 1}: the rerun changed the records")
            row = rows[v.name]
            row["wall_s"].append(round(wall, 2))
            row["busy_cpu_s"].append(None if cpu is None else round(cpu, 2))
            row["rerun_s"].append(round(rerun, 2))
            log(f"round {r + 1}/{rounds} {v.name}: {wall:.2f} s, busy CPU {_fmt(cpu)} s; rerun {rerun:.2f} s")
    first = statistics.median(rows[variants[0].name]["wall_s"])
    for row in rows.values():
        row["wall_median_s"] = round(statistics.median(row["wall_s"]), 2)
        cpus = [c for c in row["busy_cpu_s"] if c is not None]
        row["busy_cpu_median_s"] = round(statistics.median(cpus), 2) if cpus else None
        row["speedup_vs_first"] = round(first / row["wall_median_s"], 3)
    return {
        "recipes": [str(p) for p in recipes],
        "overrides": overrides,
        "runs": n_runs,
        "rounds": rounds,
        "address": address,
        "cores": os.cpu_count(),
        "load_average_before": load,
        "variants": list(rows.values()),
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
