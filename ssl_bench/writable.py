"""Whether a folder or an output file could be created, asked before any work starts, so that a bad path fails in
one line at once instead of after a long run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ssl_bench.errors import ConfigError


def creation_problem(folder: Path) -> tuple[Path, str] | None:
    """Why ``folder`` (or a file in it) could not be created, as (its nearest existing ancestor, the reason:
    "is a file", "permission denied", "no such file or directory", ...), or None. That ancestor must be a folder,
    writable by its permission bits and able to hold a new entry: a folder is made and removed there, since
    permission bits are not the whole story (read-only mounts, /proc, root)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return probe, "is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        return probe, "permission denied"
    try:
        tempfile.TemporaryDirectory(dir=probe, prefix=".ssl-bench-probe-").cleanup()
    except OSError as exc:
        return probe, (exc.strerror or type(exc).__name__).lower()
    return None


def check_output_file(path: Path | None, option: str) -> None:
    """Refuse, before any work, an output file (``--json F``, ``--csv F``) that could not be written."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder, not a file")
    problem = creation_problem(path.parent)
    if problem is not None:
        where, reason = problem
        sep = " " if reason == "is a file" else ": "
        raise ConfigError(f"{option} {path} cannot be written ({where}{sep}{reason})")
