"""Arrays derived from a library's bundled data, kept in one .npz file below the data root, so that a process
need not import that library only to rebuild them (importing scikit-learn takes ≈1.8 s on this project's machine,
more than a whole smoke run trains).

The file's name carries the versions of the libraries that made the arrays. A file that does not load, or whose
arrays fail the caller's check, is rebuilt; one that cannot be written (read-only root, full disk) is skipped: the
arrays are returned all the same.
"""

from __future__ import annotations

import importlib.metadata
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ssl_bench.atomic_write import temp_beside

Arrays = dict[str, np.ndarray]


def cache_path(root: str | Path, name: str, *distributions: str) -> Path:
    """``<root>/<name>-<distribution>-<version>[-...].npz``, e.g. ``digits-scikit-learn-1.9.1.npz``: one file per
    version of every library whose output the arrays hold."""
    versions = "-".join(f"{d}-{importlib.metadata.version(d)}" for d in distributions)
    return Path(root).expanduser() / f"{name}-{versions}.npz"


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
    tmp = None
    try:  # a temp file and a rename, so concurrent loaders never read half a file; not a result, so no fault hook
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)  # numeric arrays, read back without pickle too
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return arrays
