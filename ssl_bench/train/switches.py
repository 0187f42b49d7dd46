"""Speed switches of the training step, resolved for the device they run on.

Each is a ``[train]`` key; ``auto`` takes the value measured to be fastest on that kind of device with no loss of
accuracy (docs/training-and-speed.md#speed), and the resolved values go into every record (``speed``):

- ``precision``: ``fp32``, ``bf16`` (autocast on CPU or CUDA) or ``fp16`` (autocast with loss scaling, CUDA only);
  the forward passes of the step, the probes and evaluation run in it, the optimizer and the EMA in fp32;
- ``memory_format``: ``contiguous`` (NCHW) or ``channels_last`` (NHWC) for the model's weights and activations;
- ``compile``: ``none`` or ``model`` (``torch.compile`` of the backbone and of its EMA copy);
- ``cpu_malloc``: ``keep`` makes glibc keep freed memory for reuse (no mmap for large blocks, no trimming), so
  each step's large activations reuse pages instead of faulting fresh ones in from the kernel; ``default`` leaves
  the allocator alone. It changes no number, only where memory comes from;
- ``threads``: CPU intra-op threads (0 = torch's default).
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ssl_bench.config import TrainConfig
from ssl_bench.cpu_info import native_bf16_cpu

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@dataclass(frozen=True)
class Speed:
    """The switches of one run, resolved for its device."""

    precision: str  # fp32 | bf16 | fp16
    memory_format: str  # contiguous | channels_last
    compile: str  # none | model
    cpu_malloc: str  # default | keep
    threads: int  # intra-op threads in use

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context the forward passes run in: autocast to bf16/fp16, or nothing in fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=_DTYPES[self.precision])

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def auto_precision(device: torch.device) -> str:
    """``precision = auto``: bf16 on a CPU with native bf16, fp32 everywhere else so far (CUDA: not yet measured)."""
    return "bf16" if device.type == "cpu" and native_bf16_cpu() else "fp32"


def resolve(tc: TrainConfig, device: torch.device) -> Speed:
    """The switches of ``tc`` for ``device``, ``auto`` replaced by the measured choice for that kind of device."""
    cpu = device.type == "cpu"
    precision = auto_precision(device) if tc.precision == "auto" else tc.precision
    memory_format = tc.memory_format
    if memory_format == "auto":
        memory_format = "channels_last" if cpu else "contiguous"
    cpu_malloc = tc.cpu_malloc
    if cpu_malloc == "auto":
        cpu_malloc = "keep" if cpu and _glibc() is not None else "default"
    threads = tc.threads or torch.get_num_threads()
    return Speed(precision, memory_format, tc.compile, cpu_malloc, threads)


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def apply_process_settings(speed: Speed) -> None:
    """Thread count and allocator behaviour are per process: set them for the run about to start."""
    if speed.threads != torch.get_num_threads():
        torch.set_num_threads(speed.threads)
    if speed.cpu_malloc == "keep":
        libc = _glibc()
        if libc is not None:  # the plan resolved keep only where glibc is present
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
