"""Atomic file writes: a temp file beside the target, then a rename, so that readers never see a partial file, and
a failed write (a full disk) leaves the previous file intact and says so in one line."""

from __future__ import annotations

import errno
import glob
import os
import tempfile
from pathlib import Path

import ssl_bench.fault_hook as fault_hook  # the module: its ACTIVE fault is read on every write
from ssl_bench.errors import WriteError


def write_failed(path: Path, exc: OSError) -> WriteError:
    """The user-facing error of a failed write of ``path`` (disk full, no permission, ...)."""
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (free some space and run the command again: what was written before is intact)"
    return WriteError(f"could not write {path}: {reason}")


def umask() -> int:
    """This process's umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file ``.<name>.<random>.tmp`` beside ``path``, for a write and a rename, as (fd, its path). Its
    mode is what ``open`` would give a new file (0666 less the umask): ``mkstemp`` alone makes it 0600, and the
    rename would carry that over, so that nobody else could read the records of a results directory shared by a
    group."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
    except OSError:  # a filesystem without Unix modes (vfat, some network mounts): the file keeps mkstemp's mode
        pass
    return fd, tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename: readers never see a partial file.

    The temp file is ``.<name>.<random>.tmp``; a process killed mid-write leaves it behind (``remove_stale_temps``).
    A failed write (e.g. disk full) leaves the previous ``path`` as it was and raises ``WriteError``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
        with os.fdopen(fd, "wb") as fh:
            if fault_hook.ACTIVE is not None:
                fault_hook.ACTIVE.strike(path, fh, data)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_failed(path, exc) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files that killed writers of ``path`` left behind. Only for a file that one process alone
    writes (a run's checkpoint or record, under the run's lock): another writer's temp file may be in use."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)
