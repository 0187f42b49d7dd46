"""Small shared helpers: atomic file writes (with a test-only fault-injection hook), device resolution and copies,
and what the host CPU is."""

from __future__ import annotations

import errno
import glob
import os
import re
import signal
import tempfile
from pathlib import Path

import torch

from ssl_bench.errors import ConfigError, WriteError

FAULT_ENV = "SSL_BENCH_FAULT"
FAULT_KINDS = ("checkpoint", "record", "manifest", "any")


class Fault:
    """A fault to inject into the ``n``-th atomic write of a ``kind`` of file, half-way through its temp file.

    Test-only: the fault suite (``tests/faults/``) and ``tests/test_fault_hook.py`` set it through the environment
    variable ``SSL_BENCH_FAULT``, read once when this module is imported; unset, the only cost is one ``is None``
    test per write. Its value is ``KIND:N`` (the process SIGKILLs itself, as a crash or an out-of-memory kill
    would) or ``enospc:KIND:N`` (the write fails with ``OSError(ENOSPC)``, as on a full disk). ``KIND`` is
    ``checkpoint`` (``*.pt``), ``record`` (``*.json`` below a ``runs`` folder), ``manifest`` (``*.json`` below a
    ``splits`` folder: split manifests and active-learning round logs) or ``any``; ``N`` counts from 1 within
    the process.
    """

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


_FAULT = Fault.parse(os.environ[FAULT_ENV]) if os.environ.get(FAULT_ENV) else None


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
            if _FAULT is not None:
                _FAULT.strike(path, fh, data)
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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files that killed writers of ``path`` left behind. Only for a file that one process alone
    writes (a run's checkpoint or record, under the run's lock): another writer's temp file may be in use."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``auto`` -> the first CUDA device if one is usable, else the CPU. ``key`` names the setting in errors (the
    bench commands pass their ``--device``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key}: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} is {name!r} but no CUDA device is available; use auto or cpu")
    return device


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on the CPU (the kernel's MemAvailable); None elsewhere or where it cannot be
    known. A CPU allocation beyond it is not refused but ends in the OOM killer; a GPU's allocator raises instead,
    and asking a GPU would create a CUDA context in the process that plans (on GPU 0 for every torchrun rank)."""
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def out_of_memory(exc: BaseException) -> bool:
    """An allocation that could not be served: torch's OutOfMemoryError (CUDA and other accelerators), Python's
    MemoryError, or the CPU allocator's refusal ("can't allocate memory", "not enough memory: you tried to allocate
    N bytes", depending on the torch version)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "can't allocate memory", "not enough memory")) or bool(
        re.search(r"allocate \d+ bytes", text)
    )


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; to CUDA through pinned memory without blocking, since a copy from pageable memory makes
    the host wait for the work already queued on the device."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def cpu_fields() -> dict[str, str]:
    """The first processor's entry of Linux's /proc/cpuinfo (model name, cpu family, model, stepping, flags, ...);
    empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where bf16 autocast is about twice as fast
    as fp32 for the paper-scale step; elsewhere torch emulates bf16 and it is several times slower (README, "Speed").
    ``precision = auto`` and the records' ``host.native_bf16`` both ask this."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's (private) feature tests
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
