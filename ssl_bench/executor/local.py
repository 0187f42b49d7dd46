"""``--executor local``: ``workers`` runs at once on this machine, each in a fresh spawned process (one process per
run, so no state, threads or allocator settings leak from one run into the next).

Each run is a ``multiprocessing`` process whose Outcome comes back through a pipe; its exit code says how it
ended. A process that dies (killed, out of memory) fails only its own run, which is retried from its checkpoint;
the other runs go on. (concurrent.futures' process pool cannot do that: one dead worker breaks the pool and every
run in flight with it.)
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

from ssl_bench.executor.options import GridOptions, driver_path, threads_per_run
from ssl_bench.executor.progress import GridProgress, Ledger
from ssl_bench.executor.worker import work
from ssl_bench.plan import PlannedRun
from ssl_bench.runner import Outcome, quiet


def _child(conn, p: PlannedRun, results_dir: str, sys_path: list[str], threads: int) -> None:
    # the records are on disk; the outcome alone stays far below a pipe's buffer, so the send never blocks the exit
    conn.send(dataclasses.replace(work(p, results_dir, sys_path, threads), records=[]))
    conn.close()


def _died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker process killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"worker process killed by signal {-exitcode}"
    return f"worker process exited with code {exitcode} before reporting"


def run_local(
    planned: list[PlannedRun], results_dir: Path, opts: GridOptions, log: Callable[[str], None]
) -> list[Outcome]:
    threads = threads_per_run(opts)
    progress = GridProgress(len(planned), log)
    ledger = Ledger([quiet(p) if opts.workers > 1 else p for p in planned], opts.retries, progress)
    ctx = multiprocessing.get_context("spawn")
    running: dict[object, tuple[PlannedRun, object, object]] = {}  # sentinel -> (run, process, pipe end)
    try:
        while ledger.queue or running:
            while ledger.queue and len(running) < opts.workers:
                p = ledger.start()
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(child, p, str(results_dir), driver_path(), threads))
                proc.start()
                child.close()
                running[proc.sentinel] = (p, proc, parent)
            for sentinel in wait(list(running)):
                p, proc, conn = running.pop(sentinel)
                try:  # a killed child leaves the pipe closed: poll() is then true and recv() hits EOF
                    out = conn.recv() if conn.poll() else None
                except (EOFError, OSError):
                    out = None
                proc.join()
                conn.close()
                if out is None:
                    out = Outcome(p.tag, p.config_hash, "failed", _died(proc.exitcode))
                ledger.settle(p, out)
    finally:
        for _p, proc, _ in running.values():  # interrupted (Ctrl-C): stop the workers; their checkpoints stay
            proc.terminate()
            proc.join()
        progress.close()
    return ledger.outcomes
