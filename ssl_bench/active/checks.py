"""The [active] section's checks: acquisitions that parse, a schedule whose every round trains and is evaluated,
and a pool that can supply every round's labels.

The plan (``ssl_bench.plan``) calls them before anything is trained or written; each type, choice and range of a
single key is declared on ``ActiveConfig`` itself (``config_checks``).
"""

from __future__ import annotations

import itertools

from ssl_bench.active.acquisition import Acquisition
from ssl_bench.active.loop import schedule
from ssl_bench.config import ActiveConfig, TrainConfig
from ssl_bench.data.splits import Split
from ssl_bench.errors import ConfigError


def check_acquisitions(cfg: ActiveConfig, setting: str, steps: int) -> None:
    """Each acquisition names a known function once, in setting ssl, and train.steps is left to the schedule."""
    for name in cfg.acquisitions:
        Acquisition.parse(name)
        if cfg.acquisitions.count(name) > 1:
            raise ConfigError(f"active.acquisitions lists {name!r} more than once: each is one run per seed")
    if not cfg.acquisitions:
        return
    if setting != "ssl":
        raise ConfigError(f"active learning is not available in setting {setting}; use setting ssl")
    if steps != TrainConfig.steps:
        raise ConfigError(
            "train.steps is derived from the active-learning schedule (active.first_interval, interval, grow and "
            f"final), so an active-learning recipe leaves it out; got train.steps = {steps}"
        )


def check_active(cfg: ActiveConfig, start: int, batch_size: int, eval_every: int) -> list[tuple[int, int]]:
    """The label-growth schedule from ``start`` labels, after checking that every round trains and is evaluated."""
    if start > cfg.final:
        raise ConfigError(f"the start budget {start} is above active.final = {cfg.final}")
    rounds = schedule(cfg, start, batch_size)
    ends = [0] + [end for end, _ in rounds]
    if any(b <= a for a, b in itertools.pairwise(ends)):
        raise ConfigError("active.interval (and active.first_interval) must give at least one step per round")
    for a, b in itertools.pairwise(ends):  # evaluations fall on multiples of eval_every and on the last step
        if b // eval_every == a // eval_every and b != ends[-1]:
            raise ConfigError(
                "an active-learning round would end without an evaluation: make active.interval (and "
                f"active.first_interval) a multiple of train.eval_every = {eval_every}"
            )
    return rounds


def check_label_pool(cfg: ActiveConfig, n_train: int, split: Split) -> None:
    """The images outside the start budget can supply every label up to ``active.final``."""
    available = len(split.pool(n_train, split.labeled, include_labeled=False))
    if cfg.final - len(split.labeled) > available:
        raise ConfigError(
            f"active.final = {cfg.final} needs {cfg.final - len(split.labeled)} more labels but only "
            f"{available} unlabeled images remain in the pool of {split.id}"
        )
