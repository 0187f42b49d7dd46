"""One run at a time: a per-run lock file in the results directory, whoever starts the run.

``RESULTS_DIR/.locks/<config hash>.lock`` is created atomically (``O_CREAT``) and held with an exclusive
``flock`` for as long as the run trains; it holds the holder's host, pid and start time. The kernel (or the NFS
lock manager) releases an ``flock`` when its process dies, so a lock file left behind by a killed process is
stale by construction: the next starter takes it over and says whose it was. A lock held by a live process makes
the second starter skip the run. Works for local worker processes, Ray tasks and separate shells alike, on one
machine or on a shared filesystem whose locks are coherent (local disks, NFSv4).

``exclusive`` is the blocking kind, for short work that must wait its turn instead of being skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_DIR = ".locks"


def lock_path(results_dir: Path, config_hash: str) -> Path:
    return Path(results_dir) / LOCK_DIR / f"{config_hash}.lock"


def describe(holder: dict[str, Any] | None) -> str:
    """'pid 123 on host h since 2026-...' for a lock's contents (or 'an unknown process')."""
    if not holder:
        return "an unknown process"
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')}"


def read_holder(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class RunLock:
    """The lock of one run. ``acquire()`` -> True when this process now holds it; False when a live process does
    (``holder`` then says who). ``stale`` is the previous holder when a dead process's lock was taken over."""

    def __init__(self, results_dir: Path, config_hash: str) -> None:
        self.path = lock_path(results_dir, config_hash)
        self.fd: int | None = None
        self.holder: dict[str, Any] | None = None
        self.stale: dict[str, Any] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as for every file we write
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.holder = read_holder(self.path)
                return False
            # the file may have been released and unlinked between our open and our flock: then the lock we hold is
            # on an orphaned inode, and another process may already hold the new file; start over
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            break
        previous = os.read(fd, 1 << 16)
        if previous.strip():
            try:
                self.stale = json.loads(previous)
            except ValueError:
                self.stale = {}
        started = dt.datetime.now(dt.UTC).isoformat("T", "seconds")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd, self.holder = fd, me
        return True

    def release(self) -> None:
        """Unlink, then unlock: a starter that opened the old file sees the inode change and retries."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def exclusive(results_dir: Path, name: str) -> Iterator[None]:
    """Hold ``RESULTS_DIR/.locks/<name>.flock`` exclusively, waiting for another holder to finish: for work on the
    results directory that must not interleave (one leaderboard generation at a time). Unlike a run's lock the file
    stays in place, so every process locks the same inode; a killed holder's lock is released by the kernel."""
    path = Path(results_dir) / LOCK_DIR / f"{name}.flock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as for every file we write
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the flock
