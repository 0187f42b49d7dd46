"""The test-only fault-injection hook of atomic writes: kill the process (or fail as a full disk would) half-way
through the n-th write of a kind of file, so that the fault suite can prove that no partial file is ever read."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

from ssl_bench.errors import ConfigError

FAULT_ENV = "SSL_BENCH_FAULT"
FAULT_KINDS = ("checkpoint", "record", "manifest", "any")


class Fault:
    """A fault to inject into the ``n``-th atomic write of a ``kind`` of file, half-way through its temp file.

    Test-only: the fault suite (``tests/promises/faults/``) and ``tests/test_fault_hook.py`` set it through the
    environment variable ``SSL_BENCH_FAULT``, read once when this module is imported; unset, the only cost is one
    ``is None`` test per write. Its value is ``KIND:N`` (the process SIGKILLs itself, as a crash or an OOM kill
    would) or ``enospc:KIND:N`` (the write fails with ``OSError(ENOSPC)``, as on a full disk). ``KIND`` is
    ``checkpoint`` (``*.pt``), ``record`` (``*.json`` below a ``runs`` folder), ``manifest`` (``*.json`` below a
    ``splits`` folder: split manifests and active-learning round logs) or ``any``; ``N`` counts from 1 within the
    process."""

    def __init__(self, mode: str, kind: str, n: int) -> None:
        self.mode, self.kind, self.n, self.seen = mode, kind, n, 0

    @classmethod
    def parse(cls, value: str) -> Fault:
        parts = value.split(":")
        mode = parts.pop(0) if len(parts) == 3 else "kill"
        if len(parts) != 2 or mode not in ("kill", "enospc") or parts[0] not in FAULT_KINDS or not parts[1].isdigit():
            raise ConfigError(
                f"{FAULT_ENV}={value!r}: expected KIND:N or enospc:KIND:N with KIND one of {', '.join(FAULT_KINDS)}"
            )
        return cls(mode, parts[0], int(parts[1]))

    def matches(self, path: Path) -> bool:
        if self.kind == "checkpoint":
            return path.suffix == ".pt"
        if self.kind in ("record", "manifest"):
            folder = "runs" if self.kind == "record" else "splits"
            return path.suffix == ".json" and folder in path.parent.parts
        return True

    def strike(self, path: Path, fh, data: bytes) -> None:
        """Count a write of ``path``; on the n-th of its kind, write half of ``data`` to ``fh`` and fail."""
        if not self.matches(path):
            return
        self.seen += 1
        if self.seen != self.n:
            return
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        if self.mode == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        os.kill(os.getpid(), signal.SIGKILL)  # delivered before kill() returns: nothing below runs


# the fault of this process (None unless SSL_BENCH_FAULT is set); atomic_write reads it on every write
ACTIVE = Fault.parse(os.environ[FAULT_ENV]) if os.environ.get(FAULT_ENV) else None
