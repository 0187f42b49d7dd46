"""One run's parts, built in one place: model, algorithm, EMA, optimizer and the augmentation policy of each view role.

Used by the trainer, by the plan's validation of a recipe and by the conformance checks, so all three build the
very same objects from a ``RunConfig``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ssl_bench.algorithms import Algorithm, AlgorithmConfig, DataInfo, get_algorithm
from ssl_bench.augment import Policy, ViewSpec, create_policy, effective_flip
from ssl_bench.config import AugmentConfig, RunConfig
from ssl_bench.data.images import ImageDataset
from ssl_bench.models import create_model
from ssl_bench.train.optim import EMA, make_optimizer


@dataclass
class RunParts:
    """What ``build_run`` makes; the trainer adds the data feed, the loop and checkpoints."""

    algorithm: Algorithm  # holds the backbone as ``algorithm.model``
    ema: EMA
    optimizer: torch.optim.Optimizer | None  # None when built without one (the plan's validation)
    spec: ViewSpec  # the views the algorithm asked for
    policies: dict[str, Policy]  # by view role (weak, strong, none)
    feedback: dict[str, Any]  # policies that learn from probes of the labeled images (CTAugment), by name
    probe_base: Policy  # the weak view the probes start from (docs/reference/augmentation.md#ctaugment)
    augmentation: str  # the policies the run really uses, e.g. "ctaugment+weak"
    flip: bool  # whether its weak views flip: augment.flip resolved against the dataset (policies.effective_flip)


def role_policies(spec: ViewSpec, augment: AugmentConfig, hflip: bool) -> tuple[dict[str, Policy], dict[str, Policy]]:
    """(policy by view role, policy by name): ``augment.weak`` / ``augment.strong`` name the policy of each role;
    roles that share a policy share one instance (and so one CTAugment state)."""
    roles = {*spec.labeled, *spec.unlabeled}
    names = {r: "none" if r == "none" else getattr(augment, r) for r in roles}
    by_name = {n: create_policy(n, augment, hflip) for n in sorted(set(names.values()))}
    return {r: by_name[n] for r, n in names.items()}, by_name


def construct(cls: type[Algorithm], model: nn.Module, cfg: AlgorithmConfig, data: DataInfo) -> Algorithm:
    """``cls(model, cfg, num_classes, data=data)``; an algorithm whose ``__init__`` predates ``data`` (a plug-in
    written for the three-argument form) is built without it and given ``data`` through ``set_data``."""
    params = inspect.signature(cls.__init__).parameters
    if "data" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return cls(model, cfg, data.num_classes, data=data)
    algorithm = cls(model, cfg, data.num_classes)
    algorithm.set_data(data)
    return algorithm


def build_run(
    run: RunConfig,
    ds: ImageDataset,
    device: torch.device | None = None,
    channels_last: bool = False,
    optimizer: bool = True,
    data: DataInfo | None = None,
) -> RunParts:
    """Build the parts of ``run`` for data shaped like ``ds`` on ``device`` (NHWC weights with ``channels_last``);
    the global torch seed is set to ``run.seed`` first, so the initial weights are those of the run. ``data``
    describes the labeled set and unlabeled pool to the algorithm (``train.feed.data_info``; unknown if omitted),
    and the algorithm's teacher is bound to the EMA model built here.

    ``optimizer=False`` leaves the optimizer out: a process that only validates a recipe (the plan, in a driver
    whose runs train elsewhere) then does not import ``torch._dynamo``, which the first torch.optim optimizer of a
    process pulls in (≈1.7 s here); the optimizer's settings are checked with the config."""
    torch.manual_seed(run.seed)
    model = create_model(run.model, ds.num_classes, ds.channels, ds.image_size)
    data = data if data is not None else DataInfo.unknown(ds.num_classes)
    algorithm = construct(get_algorithm(run.algorithm.name), model, run.algorithm, data)
    algorithm.to(device or torch.device("cpu")).train()
    if channels_last:
        algorithm.to(memory_format=torch.channels_last)
    tc = run.train
    ema = EMA(algorithm.model, tc.ema_decay, tc.ema_warmup, tc.ema_buffers)
    algorithm.bind_teacher(ema.model)
    spec = algorithm.views()
    policies, by_name = role_policies(spec, run.augment, ds.hflip)
    return RunParts(
        algorithm=algorithm,
        ema=ema,
        optimizer=make_optimizer(tc, algorithm) if optimizer else None,
        spec=spec,
        policies=policies,
        # CTAugment learns from probes of the labeled images (docs/reference/augmentation.md#ctaugment): its state lives
        # with the run, not the algorithm
        feedback={n: fb for n, p in by_name.items() if (fb := getattr(p, "feedback", None)) is not None},
        probe_base=create_policy("weak", run.augment, ds.hflip),
        augmentation="+".join(sorted(by_name)),
        flip=effective_flip(run.augment, ds.hflip),
    )
