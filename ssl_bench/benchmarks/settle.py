"""When is a pipeline warm? The warm-up rule of ``ssl-bench bench train``, as pure functions of step times.

A freshly started pipeline is slower than it will be: its allocator, page tables, DataLoader workers and caches are
still filling up, and for the peer-style reference that takes several steps. Timing it too early flatters whoever
warms up faster. The rule (``--warmup auto``, the default):

- the pipelines take untimed steps in turns, one step each per round;
- after a round, a pipeline is *settled* when its last ``window`` step times all lie within ``band`` (relative)
  of their median;
- the warm-up ends after the first round, from ``min_steps`` rounds on, at which every pipeline is settled, and
  at the latest after ``max_steps`` rounds, where a pipeline still outside the band is reported *not settled*.

``--warmup N`` takes exactly N rounds instead; each pipeline's last ``window`` steps are then judged by the same band
(too few to judge when N < window), so that the output says whether the fixed warm-up reached steady state.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

from ssl_bench.errors import ConfigError

WARMING, SETTLED, NOT_SETTLED, UNJUDGED = "warming", "settled", "not settled", "too few to judge"


@dataclasses.dataclass(frozen=True)
class SettleRule:
    window: int = 4  # the last k step times that must agree
    band: float = 0.10  # ... each within this fraction of their median
    min_steps: int = 4  # never fewer warm-up steps (auto)
    max_steps: int = 20  # never more (auto): then "not settled"
    fixed: int | None = None  # --warmup N: exactly N steps, judged but not extended

    def __post_init__(self) -> None:
        if self.window < 2 or not 0 < self.band < 1 or not self.window <= self.min_steps <= self.max_steps:
            raise ValueError(f"bad settle rule {self}: needs 2 <= window <= min_steps <= max_steps, 0 < band < 1")
        if self.fixed is not None and self.fixed < 0:
            raise ValueError(f"a fixed warm-up takes >= 0 steps, got {self.fixed}")

    def as_record(self) -> dict[str, Any]:
        mode = "auto" if self.fixed is None else "fixed"
        return {"mode": mode, **dataclasses.asdict(self)}

    def describe(self) -> str:
        """The rule in one line, for the printed header."""
        band = f"last {self.window} step times within ±{100 * self.band:g} % of their median"
        if self.fixed is None:
            limits = f"at least {self.min_steps} steps, at most {self.max_steps}"
            return f"auto: untimed steps in turns until every pipeline has its {band} ({limits})"
        return f"fixed (--warmup {self.fixed}): {self.fixed} untimed step(s) in turns; settled = {band}"


def rule_of_flag(text: str) -> SettleRule:
    """The rule of ``--warmup``: ``auto``, or a fixed number of steps."""
    if text.strip() == "auto":
        return SettleRule()
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"--warmup must be auto or a number of steps, got {text!r}") from None
    if n < 0:
        raise ConfigError(f"--warmup must be >= 0, got {n}")
    return SettleRule(fixed=n)


def within_band(times: Sequence[float], window: int, band: float) -> bool:
    """Whether the last ``window`` of ``times`` all lie within ``band`` of their median (False with fewer)."""
    if len(times) < window:
        return False
    last = times[-window:]
    mid = statistics.median(last)
    return all(abs(t - mid) <= band * mid for t in last)


def verdict(times: Sequence[float], rule: SettleRule) -> str:
    """Where a pipeline whose warm-up steps so far took ``times`` (seconds, oldest first) stands: WARMING (take
    another step), SETTLED, NOT_SETTLED (no more steps: the maximum, or the fixed count, is reached outside the
    band) or UNJUDGED (a fixed warm-up shorter than the window)."""
    n = len(times)
    steady = within_band(times, rule.window, rule.band)
    if rule.fixed is not None:
        if n < rule.fixed:
            return WARMING
        return UNJUDGED if n < rule.window else SETTLED if steady else NOT_SETTLED
    if n < rule.min_steps:
        return WARMING
    if steady:
        return SETTLED
    return NOT_SETTLED if n >= rule.max_steps else WARMING


def warm_up_done(histories: Sequence[Sequence[float]], rule: SettleRule) -> bool:
    """The warm-up of pipelines stepping in turns ends when none of them is still WARMING."""
    return all(verdict(times, rule) != WARMING for times in histories)


def settled_flag(state: str) -> bool | None:
    """The JSON's ``settled``: true, false, or null when too few steps were taken to judge."""
    return {SETTLED: True, NOT_SETTLED: False}.get(state)


def note(name: str, times: Sequence[float], rule: SettleRule) -> str:
    """'reference: not settled after 20 warm-up steps (last 4: 9.12, 10.40, 11.83, 9.61 s)'."""
    state = verdict(times, rule)
    n = len(times)
    last = ", ".join(f"{t:.3g}" for t in times[-rule.window :])
    shown = f" (last {min(n, rule.window)}: {last} s)" if n else ""
    if state == UNJUDGED:
        return f"{name}: {n} warm-up step(s), too few to judge settling (the rule needs {rule.window}){shown}"
    return f"{name}: {state} after {n} warm-up step{'s' if n != 1 else ''}{shown}"
