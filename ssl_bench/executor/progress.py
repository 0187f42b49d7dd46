"""The grid's bookkeeping, shared by the executors: the queue with each run's attempts (a failure with attempts left
goes back into the queue), and the terminal: one line per finished run above an overall bar (runs done / total, ETA)."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable

from ssl_bench.plan import PlannedRun
from ssl_bench.runner import Outcome


class GridProgress:
    def __init__(self, total: int, log: Callable[[str], None]) -> None:
        from tqdm import tqdm

        self.log = log
        self.bar = tqdm(total=total, desc="grid", unit="run", dynamic_ncols=True, mininterval=1.0, file=sys.stderr)

    def note(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def finished(self, out: Outcome) -> None:
        detail = out.reason or out.headline
        if out.status == "done" and out.wall_s:
            detail = f"{detail}, {out.wall_s:.1f} s".lstrip(", ")
        where = f" -> {out.record_path}" if out.record_path else ""
        self.bar.write(f"{out.status}: {out.tag}" + (f" ({detail})" if detail else "") + where, file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class Ledger:
    """The runs still to start, the attempts of each, and the final outcomes."""

    def __init__(self, planned: list[PlannedRun], retries: int, progress: GridProgress) -> None:
        self.queue = deque(planned)
        self.attempts = {p.config_hash: 0 for p in planned}
        self.retries, self.progress = retries, progress
        self.outcomes: list[Outcome] = []

    def start(self) -> PlannedRun:
        p = self.queue.popleft()
        self.attempts[p.config_hash] += 1
        return p

    def settle(self, p: PlannedRun, out: Outcome) -> None:
        """Record ``out``, or put ``p`` back into the queue if it failed with attempts left (it resumes from its
        checkpoint)."""
        n = self.attempts[p.config_hash]
        diverged = out.reason.startswith("DivergenceError")  # deterministic: it would diverge again from its checkpoint
        if out.status == "failed" and n <= self.retries and not diverged:
            self.progress.note(f"{p.tag}: failed ({out.reason}); retry {n} of {self.retries}")
            self.queue.append(p)
            return
        self.outcomes.append(out)
        self.progress.finished(out)
