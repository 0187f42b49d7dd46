"""Whether the augmentation ops may read tensor values on the host (free on the CPU, a stall on an accelerator),
and the counting that depends on it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

# On the CPU the ops read group sizes, index lists and shortcut conditions from their tensors: that is free there
# and lets each op run on just the samples that chose it. On an accelerator every such read would stall the host
# until the device has caught up, so there the ops read nothing: every op of a policy runs on the whole batch and
# per-sample masks pick the results (more arithmetic, no synchronisation). Both paths give the same pixels.

_NO_HOST_READS = contextvars.ContextVar("no_host_reads", default=False)


def host_reads(t: torch.Tensor) -> bool:
    """Whether the ops may read ``t``'s values on the host: only for CPU tensors, outside ``no_host_reads``."""
    return t.device.type == "cpu" and not _NO_HOST_READS.get()


@contextlib.contextmanager
def no_host_reads() -> Iterator[None]:
    """Run the accelerator paths (no host reads) on any device, e.g. to compare them with the CPU paths."""
    token = _NO_HOST_READS.set(True)
    try:
        yield
    finally:
        _NO_HOST_READS.reset(token)


def count_values(index: torch.Tensor, size: int) -> torch.Tensor:
    """How often each of 0..size-1 occurs in ``index`` (int64 (size,)): ``bincount`` on the CPU; elsewhere an
    index_add, because bincount reads the largest value on the host to size its output."""
    if host_reads(index):
        return torch.bincount(index, minlength=size)
    ones = torch.ones(index.shape, dtype=torch.int64, device=index.device)
    return torch.zeros(size, dtype=torch.int64, device=index.device).index_add_(0, index, ones)
