"""One run on several processes (``torchrun --nproc_per_node N -m ssl_bench.cli run RECIPE``): DistributedDataParallel.

The recipe's batch is the global batch. Every rank draws the whole step from the same seeded streams (indices,
augmentation parameters, CTAugment probes), so all ranks hold the same views and CTAugment state without
communicating, and each keeps its own contiguous slice of every view (``shard``). Losses are means over the rank's
slice; DDP averages the gradients, which is the mean over the global batch when the slices are equal (the plan
refuses batches that do not split evenly). BatchNorm uses each rank's slice, or with ``train.sync_bn`` the whole
global batch (``GlobalBatchNorm`` on CPU/gloo, torch's SyncBatchNorm on CUDA). Parameters, EMA and BN buffers stay
identical on every rank (with per-rank BN statistics, rank 0's running statistics are broadcast after each step);
evaluation runs on every rank, and checkpoints, progress and the record come from rank 0.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ssl_bench.algorithms import Ranks
from ssl_bench.augment.views import Batch
from ssl_bench.cpu_info import cpu_fields


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size and local rank (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "").strip() or 1)  # unset or empty: one process
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    def init(self, backend: str) -> None:
        """Join the process group (torchrun's env:// rendezvous); a no-op for one process."""
        if self.active and not dist.is_initialized():
            dist.init_process_group(backend, rank=self.rank, world_size=self.world)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BN running statistics) on every rank: with per-rank BN statistics, this keeps the
        EMA model, and so evaluation and the CTAugment probes, identical on every rank."""
        if self.active:
            for b in module.buffers():
                dist.broadcast(b, src=0)

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = Dist()


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def device_name(device: torch.device) -> str:
    """What a record names a rank's device by: the GPU's name, or the CPU's model name ('cpu' if unknown)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_fields().get("model name") or platform.processor() or "cpu"


def shard(batch: Batch, d: Dist) -> Batch:
    """This rank's contiguous slice of every tensor of the global ``batch``."""
    if not d.active:
        return batch

    def part(t: torch.Tensor) -> torch.Tensor:
        k = t.shape[0] // d.world
        return t[d.rank * k : (d.rank + 1) * k]

    def optional(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else part(t)

    return Batch(
        x=tuple(part(v) for v in batch.x),
        y=part(batch.y),
        u=tuple(part(v) for v in batch.u),
        x_target=tuple(part(v) for v in batch.x_target),
        y_target=optional(batch.y_target),
        idx_x=optional(batch.idx_x),
        idx_u=optional(batch.idx_u),
        idx_target=optional(batch.idx_target),
    )


class ProcessGroupRanks(Ranks):
    """``Ranks`` over torch.distributed's default process group: what an algorithm reduces or gathers lands on every
    rank, so per-image and running state stay identical across ranks (as one process would hold it)."""

    def __init__(self, d: Dist) -> None:
        self.world = d.world

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone()
        dist.all_reduce(out)
        return out

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.sum(t) / self.world

    def cat(self, t: torch.Tensor) -> torch.Tensor:
        flag = t.dtype == torch.bool  # sent as bytes: not every backend gathers bools
        t = (t.to(torch.uint8) if flag else t).detach().contiguous()
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t)
        out = torch.cat(parts)
        return out.bool() if flag else out


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch: per-channel sums, sums of squares and
    counts are summed over the ranks with an autograd-aware all-reduce (so the backward pass is that of one BN over
    the whole batch). For backends without SyncBatchNorm (gloo on CPU); evaluation and one process are plain BN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed._functional_collectives import all_reduce  # autograd-aware (backward: all-reduce)

        world = dist.group.WORLD
        assert world is not None  # None only before the process group is initialised (tested above)
        xf = x.float()
        c = x.shape[1]
        count = torch.full((1,), x.numel() / c, dtype=torch.float32, device=x.device)
        stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]), "sum", world)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        running_mean, running_var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        if self.track_running_stats and running_mean is not None and running_var is not None and tracked is not None:
            with torch.no_grad():
                tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                running_mean.lerp_(mean.detach(), factor)
                running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), factor)
        shape = (1, c, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm2d computing global-batch statistics; parameters and buffers are the same
    tensors as before (the optimizer and the EMA keep pointing at them)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            setattr(model, name, new)
        else:
            sync_batchnorm(child, device)
    return model


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The DistributedDataParallel module that forwards ``model`` and averages its gradients over the ranks."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=device if ids else None)


@contextlib.contextmanager
def forward_through(algorithm: nn.Module, ddp: nn.Module | None) -> Iterator[None]:
    """Inside, ``algorithm.model`` is the DDP wrapper (so its forward passes register for gradient averaging);
    outside it is the plain backbone that the EMA, checkpoints and evaluation see."""
    if ddp is None:
        yield
        return
    raw = algorithm.model
    algorithm.model = ddp
    try:
        yield
    finally:
        algorithm.model = raw


def min_over_ranks(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """The smallest of a per-rank tensor's values over the ranks, element-wise (``value`` itself on one process)."""
    if not d.active:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MIN)
    return out


def mean_over_ranks(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of a per-rank scalar over the ranks (e.g. a step's loss, for logging)."""
    if not d.active:
        return value
    out = value.detach().clone().float()
    dist.all_reduce(out)
    return out / d.world
