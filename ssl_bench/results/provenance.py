"""Provenance of a run's numbers: the git commit of the code that trained it (and whether the checkout differed),
the library versions, the CPU, and the time; records and benchmark outputs carry them so that figures from two
machines or commits are never mixed up."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ssl_bench.cpu_info import cpu_fields, native_bf16_cpu


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("ssl_bench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def host_info() -> dict[str, Any]:
    """The CPU a run's numbers came from, as far as its kernels can tell: the same commit, config and thread count
    give other numbers on another CPU (other vector units, other kernels, another order of float sums), so a
    record names its CPU. Linux's /proc/cpuinfo where there is one; torch's CPU capability everywhere."""
    import torch

    info: dict[str, Any] = {"cpu": platform.processor() or "unknown", "cores": os.cpu_count()}
    fields = cpu_fields()
    if "model name" in fields:
        info["cpu"] = fields["model name"]
        info["cpu_id"] = " ".join(f"{k} {fields.get(k, '?')}" for k in ("cpu family", "model", "stepping"))
    info["native_bf16"] = native_bf16_cpu()  # what precision = auto went by
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


@dataclass(frozen=True)
class Checkout:
    """The git checkout this package runs from, as read at one moment: its HEAD and its changed tracked paths."""

    top: Path
    head: str
    changed: tuple[str, ...]

    def dirty(self, results_dir: Path | None) -> bool:
        """Whether a tracked file outside ``leaderboard/`` and ``results_dir`` differs from HEAD."""
        skip = [Path("leaderboard")]
        if results_dir is not None:
            try:
                skip.append(Path(results_dir).resolve().relative_to(self.top))
            except ValueError:
                pass
        return any(not any(Path(p).is_relative_to(s) for s in skip) for p in self.changed)


def read_checkout(where: Path | None = None) -> Checkout | None:
    """The checkout holding ``where`` (default: this package) now, from ``git rev-parse`` and ``git status``; None
    outside a git checkout or without git."""
    here = Path(where) if where is not None else Path(__file__).resolve().parents[1]

    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=here).strip())
        head = git("rev-parse", "HEAD", cwd=top).strip()
        # --no-optional-locks: a status of ours never holds .git/index.lock, so a user's own git command run at the
        # same moment (a commit during a long grid) cannot fail on it
        status = git("--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=no", cwd=top)
    except (OSError, subprocess.SubprocessError):
        return None
    entries = status.split("\0")
    changed: list[str] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        if entry:
            changed.append(entry[3:])
            if entry[0] in "RC":  # a rename or copy: its source path follows
                i += 1
                changed.append(entries[i])
        i += 1
    return Checkout(top, head, tuple(changed))


_UNREAD = object()
_code_checkout: Checkout | None | object = _UNREAD


def note_code_checkout() -> None:
    """Read the checkout once per process, when it first trains: the code this process imported and runs. Records
    name that commit (``git_state``), so a commit or an edit during a long grid cannot make a record name code that
    did not train it."""
    global _code_checkout
    if _code_checkout is _UNREAD:
        _code_checkout = read_checkout()


def git_state(results_dir: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the code this process runs: the commit it started training at (``note_code_checkout``;
    otherwise now), dirty if any tracked file outside ``leaderboard/`` and ``results_dir`` differed from it then, or
    differs now, or HEAD has moved since. Records and generated tables do not count as dirty."""
    now = read_checkout()
    start = now if _code_checkout is _UNREAD else _code_checkout
    if start is None or now is None:
        return None, None
    assert isinstance(start, Checkout)
    return start.head, start.dirty(results_dir) or now.dirty(results_dir) or now.head != start.head


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
