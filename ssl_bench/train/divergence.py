"""Divergence is a failure, not a result: a run whose loss turns non-finite, or whose test accuracy sits at chance
level for the last ``train.chance_evals`` evaluations past ``train.chance_warmup`` of its steps, stops with an
error that names the step and the last finite metrics. No record is written; the last checkpoint is kept.

The loss is watched on the device (one ``isfinite`` per step, folded into a tensor that holds the first bad step),
so the step never waits for the host; the flag is read at each evaluation, where the host synchronises anyway.
Under torchrun each rank sees its own shard's loss, so the ranks agree on the first bad step (the earliest any rank
saw) before deciding: they stop together, never one rank alone while the others wait in the next step's collectives.
"""

from __future__ import annotations

import math

import torch

from ssl_bench.config import TrainConfig
from ssl_bench.errors import DivergenceError
from ssl_bench.train.distributed import SINGLE, Dist, min_over_ranks


class DivergenceGuard:
    """Watches one run (``num_classes`` fixes chance level: 1 / classes)."""

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device, dist: Dist = SINGLE) -> None:
        self.on, self.dist = cfg.divergence, dist
        self.chance = 1.0 / max(num_classes, 1)
        self.margin, self.k = cfg.chance_margin, cfg.chance_evals
        self.warmup_step = math.ceil(cfg.chance_warmup * cfg.steps)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)  # the first step with a bad loss
        self.last_finite: tuple[int, float] | None = None  # (step, loss) at the last evaluation with a finite loss

    def watch(self, step: int, loss: torch.Tensor) -> None:
        """After optimizer step ``step`` (1-based) with this loss: remember the step if the loss is not finite."""
        if self.on:
            bad = ~torch.isfinite(loss.detach()).all() & (self.first_bad < 0)
            self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)

    def check(self, step: int, loss: torch.Tensor | float, history: list[tuple[int, float]]) -> None:
        """At an evaluation: raise DivergenceError if a loss so far was not finite or accuracy sits at chance."""
        if not self.on:
            return
        bad = self._first_bad()
        if bad >= 0:
            before = [(s, a) for s, a in history if s < bad]  # evaluations after the bad step are not finite metrics
            raise DivergenceError(f"the loss became non-finite at step {bad}; {self._last(before)}")
        self.last_finite = (step, float(loss))
        recent = [(s, a) for s, a in history if s > self.warmup_step][-self.k :]
        if len(recent) == self.k and all(a <= self.chance + self.margin for _, a in recent):
            raise DivergenceError(
                f"test accuracy at chance level ({self.chance:.3f} + {self.margin}) for the last {self.k} "
                f"evaluations (steps {recent[0][0]}-{recent[-1][0]}); {self._last(history)}"
            )

    def _first_bad(self) -> int:
        """The first step with a non-finite loss on any rank, -1 if none."""
        none = torch.iinfo(torch.long).max
        first = int(min_over_ranks(torch.where(self.first_bad < 0, none, self.first_bad), self.dist))
        return -1 if first == none else first

    def _last(self, history: list[tuple[int, float]]) -> str:
        parts = []
        if self.last_finite is not None:
            parts.append(f"last finite loss {self.last_finite[1]:.4g} at step {self.last_finite[0]}")
        if history:
            parts.append(f"last test accuracy {history[-1][1]:.4f} at step {history[-1][0]}")
        more = ", ".join(parts) if parts else "no evaluation before it"
        return f"{more}. No record written; check train.lr and the data (train.divergence = false turns this off)"
