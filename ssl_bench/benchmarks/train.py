"""``ssl-bench bench train``: real training steps of the project's trainer, timed in steady state, in turns with
another pipeline.

Two races, each between processes that take one step at a time in alternation (so that a slow phase of the
machine hits both), first untimed until their step times settle (``ssl_bench.benchmarks.settle``), then timed:

- ``bench_train``: the trainer's step (``ours``), alone or against the peer-style ``reference`` pipeline feeding
  the same algorithm step; their ratio of steps/s.
- ``bench_algorithms``: several algorithms' steps in the trainer against the first one's, the baseline. Only two
  paper-scale processes fit in memory at once, so the baseline's process stays up while each other algorithm's
  process is brought up in turn, warmed up again with the baseline and timed with it; each algorithm's ms/step is
  divided by the baseline's ms/step of the same turn.
"""

from __future__ import annotations

import multiprocessing
import statistics
from collections.abc import Callable
from typing import Any

import torch

from ssl_bench.benchmarks.pipelines import PHASES, Child
from ssl_bench.benchmarks.reference import check_reference
from ssl_bench.benchmarks.settle import WARMING, SettleRule, note, settled_flag, verdict, warm_up_done
from ssl_bench.config import RunConfig
from ssl_bench.devices import resolve_device

# the default of ``ssl-bench bench train``: a paper-scale FixMatch step (64 labeled + 7 x 64 unlabeled x 2 views of
# 32x32 RGB images through WRN-28-2, RandAugment), on random images so that no dataset files are needed
DEFAULT_RECIPE: dict[str, Any] = {
    "name": "bench-train",
    "grid": {"n_labels": [250], "seeds": [1]},
    "data": {"dataset": "synthetic"},
    "model": {"name": "wrn28", "width": 2},
    "algorithm": {"name": "fixmatch"},
    "augment": {"strong": "randaugment"},
    "train": {"batch_size": 64},
}
Log = Callable[[str], None]


def seconds(phases: dict[str, float]) -> float:
    return sum(phases.values())


def race(children: list[Child], rule: SettleRule, steps: int, log: Log, prefix: str = "") -> list[dict[str, list]]:
    """Warm ``children`` up by ``rule``, then time ``steps`` steps of each, always one step each per round, the
    order reversed every round. Per child: ``warmup_s`` (its warm-up step times) and ``times`` (phase times of
    its timed steps). ``log`` gets one line per round."""
    warm: list[list[float]] = [[] for _ in children]
    times: list[list[dict[str, float]]] = [[] for _ in children]
    rounds = 0

    def one_round(timed: bool) -> str:
        nonlocal rounds
        order = list(enumerate(children))
        for i, child in order if rounds % 2 == 0 else order[::-1]:
            phases = child.step(timed)
            if timed:
                times[i].append(phases)
            else:
                warm[i].append(seconds(phases))
        rounds += 1
        if timed:
            return ", ".join(f"{c.name} {seconds(times[i][-1]):.2f} s" for i, c in order)
        return ", ".join(f"{c.name} {warm[i][-1]:.2f} s ({verdict(warm[i], rule)})" for i, c in order)

    while not warm_up_done(warm, rule):
        line = one_round(timed=False)
        log(f"{prefix}warm-up step {rounds}: {line}")
    for k in range(steps):
        line = one_round(timed=True)
        log(f"{prefix}timed step {k + 1}/{steps}: {line}")
    return [{"warmup_s": w, "times": t} for w, t in zip(warm, times, strict=True)]


def summarize(name: str, raced: dict[str, list], info: dict, stats: dict, rule: SettleRule) -> dict[str, Any]:
    times, warm = raced["times"], raced["warmup_s"]
    totals = [seconds(t) for t in times]
    median = statistics.median(totals)
    wall = sum(totals)
    state = verdict(warm, rule)
    assert state != WARMING, state
    return {
        "warmup_steps": len(warm),
        "settled": settled_flag(state),
        "warmup_state": state,
        "warmup": note(name, warm, rule),
        "warmup_ms": [1000 * t for t in warm],
        "steps_timed": len(times),
        "ms_per_step": 1000 * median,
        "steps_per_s": 1 / median,
        "images_per_s": info["images_per_step"] / median,
        "images_per_step": info["images_per_step"],
        "ms": {p: 1000 * statistics.median(t[p] for t in times) for p in PHASES},
        "peak_mb": stats["peak_mb"],
        "minor_faults_per_step": stats["faults"] / len(times),
        "sys_pct": 100 * stats["sys_s"] / wall,
        "cpu_pct": 100 * (stats["sys_s"] + stats["user_s"]) / wall,
        "speed": info["speed"],
        "step_ms": [1000 * t for t in totals],
    }


def about(run: RunConfig, rule: SettleRule, steps: int) -> dict[str, Any]:
    """What every bench train JSON starts with: the step timed, the device, the warm-up rule."""
    return {
        "dataset": run.dataset,
        "model": run.model.name,
        "model_width": run.model.width,
        "batch_size": run.train.batch_size,
        "device": str(resolve_device(run.train.device)),
        "steps": steps,
        "warmup_rule": rule.as_record(),
        "torch": torch.__version__,
    }


def bench_train(
    run: RunConfig,
    plugins: list[str],
    steps: int,
    rule: SettleRule,
    reference: bool,
    workers: int,
    settle: float = 0.5,
    log: Log = lambda s: None,
) -> dict[str, Any]:
    """Ours and (with ``reference``) the peer-style pipeline, warmed up by ``rule`` and then timed for ``steps``
    steps each, in turns; the reference gets ``settle`` seconds after each of its steps for its workers'
    prefetching to finish before the next turn of ours."""
    if reference:
        check_reference(run)
    ctx = multiprocessing.get_context("spawn")
    children = [Child(ctx, "ours", run, plugins, workers)]
    try:
        if reference:
            children.append(Child(ctx, "reference", run, plugins, workers, pause=settle))
        raced = race(children, rule, steps, log)
        pipelines = {
            c.name: summarize(c.name, r, c.info, c.stats(), rule) for c, r in zip(children, raced, strict=True)
        }
    finally:
        for child in children:
            child.close()
    out: dict[str, Any] = {
        "mode": "reference" if reference else "ours",
        "algorithm": run.algorithm.name,
        **about(run, rule, steps),
        "config": run.to_dict(),
        "pipelines": pipelines,
        "steady": all(p["settled"] for p in pipelines.values()),
    }
    if reference:
        out["ratio"] = pipelines["ours"]["steps_per_s"] / pipelines["reference"]["steps_per_s"]
    return out


def bench_algorithms(
    runs: list[RunConfig], plugins: list[str], steps: int, rule: SettleRule, log: Log = lambda s: None
) -> dict[str, Any]:
    """The trainer's step of ``runs[1:]``'s algorithms against that of ``runs[0]`` (the baseline), one turn per
    algorithm: its process comes up, it and the baseline's are warmed up by ``rule`` and timed for ``steps`` steps
    each in turns, then its process goes. ``ratio`` = its ms/step / the baseline's ms/step of that turn."""
    ctx = multiprocessing.get_context("spawn")
    base_name = f"{runs[0].algorithm.name} (baseline)"
    baseline = Child(ctx, "ours", runs[0], plugins, 0, label=base_name)
    turns = []
    try:
        for k, run in enumerate(runs[1:], 1):
            name = run.algorithm.name
            other = Child(ctx, "ours", run, plugins, 0, label=name)
            try:
                prefix = f"turn {k}/{len(runs) - 1} ({name}): "
                raced_base, raced = race([baseline, other], rule, steps, log, prefix)
                mine = summarize(name, raced, other.info, other.stats(), rule)
                base = summarize(base_name, raced_base, baseline.info, baseline.stats(), rule)
            finally:
                other.close()
            turns.append(
                {
                    "algorithm": name,
                    "config": run.to_dict(),
                    "ms_per_step": mine["ms_per_step"],
                    "baseline_ms_per_step": base["ms_per_step"],
                    "ratio": mine["ms_per_step"] / base["ms_per_step"],
                    "steady": bool(mine["settled"] and base["settled"]),
                    "pipelines": {"algorithm": mine, "baseline": base},
                }
            )
    finally:
        baseline.close()
    return {
        "mode": "algorithms",
        "baseline": runs[0].algorithm.name,
        **about(runs[0], rule, steps),
        "baseline_config": runs[0].to_dict(),
        "turns": turns,
        "steady": all(t["steady"] for t in turns),
    }
