"""Executors for a grid of planned runs: ``local`` (worker processes on this machine) and ``ray`` (tasks on a local
Ray or on a cluster). Both schedule ``runner.run_one`` for every run not yet recorded, retry a failed run from its
checkpoint up to ``retries`` times, print one line per finished run under an overall progress bar, and end with
a summary; the per-run lock (``ssl_bench/locks.py``) keeps two starters off the same run, whoever they are.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ssl_bench.executor.options import GridOptions, check_options
from ssl_bench.plan import PlannedRun
from ssl_bench.runner import Outcome, pending

__all__ = ["GridOptions", "check_options", "run_grid", "summary"]


def run_grid(
    planned: list[PlannedRun],
    results_dir: Path,
    opts: GridOptions,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> list[Outcome]:
    """Every planned run, recorded ones skipped before submission; returns one Outcome per run, in plan order."""
    check_options(opts)
    todo, recorded = pending(planned, results_dir)
    skipped = [Outcome(p.tag, p.config_hash, "skipped", "already recorded") for p in recorded]
    if recorded:
        log(f"{len(recorded)} of {len(planned)} run(s) already recorded, skipped")
    if not todo:
        return skipped
    if opts.executor == "ray":
        from ssl_bench.executor.ray_tasks import run_on_ray

        outcomes = run_on_ray(todo, Path(results_dir), opts, log)
    else:
        from ssl_bench.executor.local import run_local

        outcomes = run_local(todo, Path(results_dir), opts, log)
    order = {p.config_hash: i for i, p in enumerate(planned)}
    return sorted(skipped + outcomes, key=lambda o: order[o.config_hash])


def summary(outcomes: list[Outcome]) -> str:
    """'done 3 · skipped 1 · failed 1' and one line per failed run."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "stopped", "failed")}
    head = " · ".join(f"{s} {n}" for s, n in counts.items() if n or s != "stopped")
    lines = [f"runs: {head}"]
    lines += [f"  failed: {o.tag}: {o.reason}" for o in outcomes if o.status == "failed"]
    return "\n".join(lines)
