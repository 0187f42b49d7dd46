"""One run's parts, built in one place: model, algorithm, EMA, optimizer and the augmentation policy of each view role.

Used by the trainer, by the plan's validation of a recipe and by the conformance checks, so all three build the
very same objects from a ``RunConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ssl_bench.algorithms import Algorithm, get_algorithm
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
    probe_base: Policy  # the weak view the probes start from (§2.2)
    augmentation: str  # the policies the run really uses, e.g. "ctaugment+weak"
    flip: bool  # whether its weak views flip: augment.flip resolved against the dataset (policies.effective_flip)


def role_policies(spec: ViewSpec, augment: AugmentConfig, hflip: bool) -> tuple[dict[str, Policy], dict[str, Policy]]:
    """(policy by view role, policy by name): ``augment.weak`` / ``augment.strong`` name the policy of each role;
    roles that share a policy share one instance (and so one CTAugment state)."""
    roles = {*spec.labeled, *spec.unlabeled}
    names = {r: "none" if r == "none" else getattr(augment, r) for r in roles}
    by_name = {n: create_policy(n, augment, hflip) for n in sorted(set(names.values()))}
    return {r: by_name[n] for r, n in names.items()}, by_name


def build_run(
    run: RunConfig,
    ds: ImageDataset,
    device: torch.device | None = None,
    channels_last: bool = False,
    optimizer: bool = True,
) -> RunParts:
    """Build the parts of ``run`` for data shaped like ``ds`` on ``device`` (NHWC weights with ``channels_last``);
    the global torch seed is set to ``run.seed`` first, so the initial weights are those of the run.

    ``optimizer=False`` leaves the optimizer out: a process that only validates a recipe (the plan, in a driver
    whose runs train elsewhere) then does not import ``torch._dynamo``, which the first torch.optim optimizer of a
    process pulls in (≈1.7 s here); the optimizer's settings are checked with the config."""
    torch.manual_seed(run.seed)
    model = create_model(run.model, ds.num_classes, ds.channels, ds.image_size)
    algorithm = get_algorithm(run.algorithm.name)(model, run.algorithm, ds.num_classes)
    algorithm.to(device or torch.device("cpu")).train()
    if channels_last:
        algorithm.to(memory_format=torch.channels_last)
    tc = run.train
    ema = EMA(algorithm.model, tc.ema_decay, tc.ema_warmup, tc.ema_buffers)
    spec = algorithm.views()
    policies, by_name = role_policies(spec, run.augment, ds.hflip)
    return RunParts(
        algorithm=algorithm,
        ema=ema,
        optimizer=make_optimizer(tc, algorithm) if optimizer else None,
        spec=spec,
        policies=policies,
        # CTAugment learns from probes of the labeled images (§2.2): its state lives with the run, not the algorithm
        feedback={n: p.feedback for n, p in by_name.items() if getattr(p, "feedback", None) is not None},
        probe_base=create_policy("weak", run.augment, ds.hflip),
        augmentation="+".join(sorted(by_name)),
        flip=effective_flip(run.augment, ds.hflip),
    )
