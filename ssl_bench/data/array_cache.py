"""Arrays derived from a library's bundled data, kept in one .npz file below the data root, so that a process
need not import that library only to rebuild them (importing scikit-learn takes ≈1.8 s on this project's machine,
more than a whole smoke run trains).

The file's name carries the library's version. A file that does not load, or whose arrays fail the caller's
check, is rebuilt; one that cannot be written (read-only root, full disk) is skipped: the arrays are returned all
the same.
"""

from __future__ import annotations

import importlib.metadata
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ssl_bench.errors import WriteError
from ssl_bench.utils import atomic_write_bytes

Arrays = dict[str, np.ndarray]


def cache_path(root: str | Path, name: str, distribution: str) -> Path:
    """``<root>/<name>-<distribution>-<version>.npz``, e.g. ``digits-scikit-learn-1.9.1.npz``."""
    version = importlib.metadata.version(distribution)
    return Path(root).expanduser() / f"{name}-{distribution}-{version}.npz"


def read_arrays(path: Path) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None


def cached_arrays(path: Path, build: Callable[[], Arrays], check: Callable[[Arrays], bool]) -> Arrays:
    """The arrays stored at ``path`` if they pass ``check``, else ``build()`` (stored at ``path`` for next time)."""
    arrays = read_arrays(path)
    if arrays is not None and check(arrays):
        return arrays
    arrays = build()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except WriteError:
        pass
    return arrays
