"""Devices: which one a setting names, how much memory is free on it, whether an error was an out-of-memory, and
copies to it that do not make the host wait."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ssl_bench.errors import ConfigError


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
