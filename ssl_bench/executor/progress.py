"""The grid's progress on the terminal: one line per finished run above an overall bar (runs done / total, ETA)."""

from __future__ import annotations

import sys
from collections.abc import Callable

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
        self.bar.write(f"{out.status}: {out.tag}" + (f" ({detail})" if detail else ""), file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
