"""The body of one task, whichever executor runs it: the worker process prepares itself for the run (the driver's
import path, plugins, CPU threads) and calls ``runner.run_one``; any exception becomes a failed Outcome with a
one-line reason."""

from __future__ import annotations

import sys
from pathlib import Path

from ssl_bench.errors import one_line
from ssl_bench.plan import PlannedRun
from ssl_bench.runner import Outcome, run_one


def prepare(sys_path: list[str], plugins: list[str], threads: int) -> None:
    """Make this process able to build the run: the driver's import path (for ``--plugin`` modules that live in
    the working tree), the plugin modules the run's hash names, and ``threads`` intra-op threads."""
    import os
    import threading

    import torch
    from tqdm import tqdm

    # tqdm's default lock is a multiprocessing semaphore: one left by a worker stopped mid-run (Ctrl-C) makes the
    # resource tracker warn of "leaked semaphore objects"; a worker's bars need only a thread lock
    tqdm.set_lock(threading.RLock())

    from ssl_bench.plugins import import_plugins, load_entry_points

    for entry in reversed(sys_path):
        if entry not in sys.path and (entry == "" or os.path.isdir(entry)):
            sys.path.insert(0, entry)
    load_entry_points()
    import_plugins(plugins)
    torch.set_num_threads(threads)


def work(p: PlannedRun, results_dir: str, sys_path: list[str], threads: int) -> Outcome:
    try:
        prepare(sys_path, sorted({m["module"] for m in p.run.plugins}), threads)
        # the run's own notes (resuming, a lock taken over) as they happen; its last line comes from the driver
        return run_one(p, Path(results_dir), log=lambda s: print(s, file=sys.stderr, flush=True), announce=False)
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, the grid goes on
        return Outcome(p.tag, p.config_hash, "failed", one_line(exc))
