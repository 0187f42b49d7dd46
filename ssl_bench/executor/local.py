"""``--executor local``: ``workers`` runs at once on this machine, in as many spawned worker processes; each worker
trains one run after another (importing torch and warming up once, not once per run), with ``threads`` intra-op
threads.

Runs and Outcomes travel over one pipe per worker. A worker that dies (killed, out of memory) fails only the run
it was training, which is retried from its checkpoint in a fresh worker; the other runs go on. (concurrent.futures'
process pool cannot do that: one dead worker breaks the pool and every run in flight with it.) Nothing of one run
carries into the next but what ``--workers 1`` shares too (the process's imports, thread count and allocator
settings): every run seeds its own streams, so a record does not depend on which worker trained it or after what.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import cast

from ssl_bench.executor.options import GridOptions, driver_path, threads_per_run
from ssl_bench.executor.progress import GridProgress, Ledger
from ssl_bench.executor.worker import work
from ssl_bench.plan import PlannedRun
from ssl_bench.runner import Outcome, quiet


def _serve(conn: Connection, results_dir: str, sys_path: list[str], threads: int) -> None:
    """A worker's life: train each run the driver sends until it sends None (or goes away). Ctrl-C reaches the
    whole process group: the driver alone acts on it (it stops its workers; their checkpoints stay), so that no
    worker prints a KeyboardInterrupt traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            p = conn.recv()
        except EOFError:
            break
        if p is None:
            break
        # the records are on disk; the outcome alone stays far below a pipe's buffer, so the send never blocks
        conn.send(dataclasses.replace(work(p, results_dir, sys_path, threads), records=[]))
    conn.close()
    gc.freeze()  # exit without walking the heap, as the ssl-bench script does (cli.script): the driver waits on it


def _died(exitcode: int | None) -> str:
    """Why a worker ended without reporting; SIGKILL names its likeliest sender, Linux's OOM killer."""
    if exitcode == -signal.SIGKILL:
        return (
            "worker process killed by SIGKILL (the kernel's OOM killer sends it when memory runs out: "
            "try fewer --workers)"
        )
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker process killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"worker process killed by signal {-exitcode}"
    return f"worker process exited with code {exitcode} before reporting"


@dataclasses.dataclass
class _Worker:
    proc: multiprocessing.process.BaseProcess
    conn: Connection
    run: PlannedRun | None = None  # the run it is training; None while idle


def run_local(
    planned: list[PlannedRun], results_dir: Path, opts: GridOptions, log: Callable[[str], None]
) -> list[Outcome]:
    threads = threads_per_run(opts)
    progress = GridProgress(len(planned), log)
    ledger = Ledger([quiet(p) if opts.workers > 1 else p for p in planned], opts.retries, progress)
    ctx = multiprocessing.get_context("spawn")
    workers: list[_Worker] = []

    def spawn() -> _Worker:
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_serve, args=(child, str(results_dir), driver_path(), threads))
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def lost(w: _Worker) -> None:
        """``w`` died: its run fails (and goes back into the queue if it has attempts left)."""
        w.conn.close()
        w.proc.join()
        workers.remove(w)
        if w.run is not None:
            ledger.settle(w.run, Outcome(w.run.tag, w.run.config_hash, "failed", _died(w.proc.exitcode)))

    try:
        while ledger.queue or any(w.run is not None for w in workers):
            idle = sum(w.run is None for w in workers)
            while len(workers) < opts.workers and len(ledger.queue) > idle:  # at the start, and after a death
                workers.append(spawn())
                idle += 1
            for w in [w for w in workers if w.run is None]:
                if not ledger.queue:
                    break
                w.run = ledger.start()
                try:
                    w.conn.send(w.run)
                except OSError:  # it died while idle
                    lost(w)
            busy = {w.conn: (w, w.run) for w in workers if w.run is not None}
            for ready in wait(list(busy)):
                conn = cast(Connection, ready)  # wait gives back the connections it was given
                w, p = busy[conn]
                try:
                    out: Outcome = conn.recv()
                except (EOFError, OSError):  # a killed worker leaves its pipe closed
                    lost(w)
                    continue
                w.run = None
                ledger.settle(p, out)
    finally:
        for w in workers:
            if w.run is None and w.proc.is_alive():
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            else:  # interrupted (Ctrl-C) mid-run: stop it; its checkpoint stays
                w.proc.terminate()
        for w in workers:
            w.proc.join()
            w.conn.close()
        progress.close()
    return ledger.outcomes
