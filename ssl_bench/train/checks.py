"""The [train] section's checks and the build check of a run's parts: device and packages present, the run
splittable over its processes, and its model, algorithm and augmentation buildable within memory.

The plan (``ssl_bench.plan``) calls them before anything is trained or written; each type, choice and range of a
single key is declared on ``TrainConfig`` itself (``config_checks``).
"""

from __future__ import annotations

import importlib.util
import re

from ssl_bench.algorithms import Algorithm
from ssl_bench.config import RunConfig, TrainConfig
from ssl_bench.data.splits import Split
from ssl_bench.devices import available_memory, out_of_memory, resolve_device
from ssl_bench.errors import ConfigError, SSLBenchError
from ssl_bench.models import parameter_bytes
from ssl_bench.train.build import RunParts, build_run
from ssl_bench.train.feed import data_info


def check_train(tc: TrainConfig) -> None:
    """[train] beyond each key's own type and range: the packages and the device it names are there."""
    if tc.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard needs the tensorboard package: pip install tensorboard")
    device = resolve_device(tc.device)
    if tc.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision = fp16 needs a CUDA device (loss scaling), not {device}; use bf16 or fp32")


def check_world(run: RunConfig, algorithm: type[Algorithm], world: int) -> None:
    """A run split over ``world`` processes (torchrun) needs an algorithm whose step splits and a batch that does."""
    if world <= 1:
        return
    name = run.algorithm.name
    if not algorithm.data_parallel:
        raise ConfigError(f"{name} cannot train on {world} processes: {algorithm.not_split_because}; run it on one")
    if run.acquisition is not None:
        raise ConfigError(f"active learning ({run.acquisition}) runs on one process only, not on {world}")
    if run.train.batch_size % world:
        raise ConfigError(
            f"train.batch_size {run.train.batch_size} does not split over {world} processes: use a multiple of {world}"
        )


def check_model_memory(run: RunConfig, ds, at_once: int = 1) -> None:
    """Refuse, before allocating any of it, a model whose weights, gradients, EMA copy and optimizer state (four
    copies of its parameters, five with Adam), times the ``at_once`` runs training together on this machine
    (``--workers``), exceed the memory free on a CPU that trains it: such a run would otherwise be killed by the
    kernel's OOM killer part-way, with no message (a GPU's allocator raises instead, caught in build_parts and the
    trainer). Activations come on top."""
    device = resolve_device(run.train.device)
    free = available_memory(device)
    if free is None:
        return
    try:
        weights = parameter_bytes(run.model, ds.num_classes, ds.channels, ds.image_size)
    except SSLBenchError:
        raise
    except Exception:  # a model that cannot be built on the meta device is checked by building it (build_parts)
        return
    need = weights * (5 if run.train.optimizer == "adam" else 4)
    if need * at_once > free:
        runs = "" if at_once == 1 else f" for each of {at_once} runs at once"
        fewer = "" if at_once == 1 else "fewer --workers, "
        raise ConfigError(
            f"model {run.model.name} at width {run.model.width} does not fit in memory ({need / 2**30:,.1f} GiB for "
            f"its weights, gradients, EMA copy and optimizer state{runs}; {free / 2**30:,.1f} GiB free on {device}): "
            f"use {fewer}a smaller model.width or model"
        )


def build_parts(run: RunConfig, ds, split: Split, at_once: int = 1) -> RunParts:
    """The run's model, algorithm and augmentation, built once to check them (the algorithm sized for ``split``); a
    model too large for memory (for ``at_once`` runs together) is a one-line error naming its size, not the
    allocator's traceback or the OOM killer."""
    check_model_memory(run, ds, at_once)
    try:
        data = data_info(run, ds.train_labels, ds.num_classes, split, split.labeled)
        return build_run(run, ds, optimizer=False, data=data)
    except (RuntimeError, MemoryError) as exc:
        if not out_of_memory(exc):
            raise
        wanted = re.search(r"allocate (\d+) bytes", str(exc))
        size = f" ({int(wanted[1]) / 2**30:,.1f} GiB in one tensor)" if wanted else ""
        raise ConfigError(
            f"model {run.model.name} at width {run.model.width} does not fit in memory{size}: use a smaller "
            "model.width or model"
        ) from None
