"""Run planned runs: skip what is already recorded, train the rest (resuming interrupted ones), record each one.

``run_one`` is the unit every executor schedules (``ssl_bench/executor``): it takes the run's lock in the results
directory, re-checks that the run is not recorded, trains or resumes it and writes its record(s).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_bench.active.loop import run_active
from ssl_bench.config import RecipeConfig
from ssl_bench.data import load_data
from ssl_bench.data.splits import get_run_split
from ssl_bench.errors import DivergenceError, RunMemoryError
from ssl_bench.locks import RunLock, describe
from ssl_bench.plan import PlannedRun, plan
from ssl_bench.results.layout import checkpoint_path, manifest_dir, remove_checkpoint, tensorboard_dir
from ssl_bench.results.provenance import note_code_checkout
from ssl_bench.results.record import make_record
from ssl_bench.results.store import load_records, quarantine, write_record
from ssl_bench.train import Trainer
from ssl_bench.train.distributed import SINGLE, Dist


@dataclass
class Outcome:
    """What became of one planned run: done (trained now), skipped (recorded, or locked by a live process),
    stopped (at ``stop_at``, checkpoint kept) or failed (with a one-line reason)."""

    tag: str
    config_hash: str
    status: str
    reason: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    headline: str = ""  # e.g. "acc_median 0.9660" of the (last) record written
    record_path: str = ""  # where the record of a finished (non-active) run was written


def recorded(results_dir: Path) -> set[tuple[str, int | None]]:
    """(config hash, round) of every record under ``results_dir``."""
    return {(r["config_hash"], r.get("round")) for r in load_records(results_dir)}


def recorded_by(results_dir: Path, config_hash: str, name: str | None) -> str:
    """`` by recipe 'x'`` when the run's record was made under another recipe name: a recipe's name and description
    label its runs but are not part of what a run computes, so a renamed recipe finds its runs recorded."""
    names = {(r.get("recipe") or {}).get("name") for r in load_records(results_dir) if r["config_hash"] == config_hash}
    others = sorted(n for n in names - {name} if n)
    return f" by recipe {others[0]!r}" if others else ""


def run_one(
    p: PlannedRun,
    results_dir: Path,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    stop_at: int | None = None,
    tag: str | None = None,
    dist: Dist = SINGLE,
    announce: bool = True,
) -> Outcome:
    """Train ``p`` under its lock unless it is recorded or another live process trains it.

    Under torchrun every rank calls this: rank 0 decides (recorded? locked?) and holds the lock, all ranks train,
    and rank 0 writes the record. ``announce=False`` leaves out the line that ends the run (recorded, skipped):
    an executor's driver prints its own from the Outcome, under its progress bar.
    """
    results_dir = Path(results_dir)
    chash = p.config_hash
    tag = tag or p.tag
    key = (chash, p.last_round)  # an active run is done once its last round is recorded
    lock, skip = None, None
    if dist.is_main:
        quarantine(results_dir, chash, log)  # an unreadable record of this run is moved aside, never overwritten
        if key in recorded(results_dir):
            skip = "already recorded"
        else:
            lock = RunLock(results_dir, chash)
            if not lock.acquire():
                skip, lock = f"being trained by {describe(lock.holder)}", None
            elif key in recorded(results_dir):  # finished by the previous holder while we waited for the lock
                skip = "already recorded"
                lock.release()
                lock = None
    if skip == "already recorded":
        skip += recorded_by(results_dir, chash, p.run.recipe.get("name"))
    skip = dist.broadcast(skip)
    if skip is not None:
        if announce:
            log(f"{tag}: {skip} (config {chash[:12]}), skipped")
        return Outcome(tag, chash, "skipped", skip)
    try:
        if lock is not None and lock.stale is not None:
            log(f"{tag}: taking over the lock left by {describe(lock.stale)}, no longer running")
        return _train(p, results_dir, log, stop_at, tag, dist, announce)
    finally:
        if lock is not None:
            lock.release()


def _train(
    p: PlannedRun,
    results_dir: Path,
    log: Callable[[str], None],
    stop_at: int | None,
    tag: str,
    dist: Dist,
    announce: bool = True,
) -> Outcome:
    run, chash = p.run, p.config_hash
    note_code_checkout()  # the commit this process's code came from, for its records
    ds = load_data(run.data)
    # the split is drawn (or read and verified) now; its manifest is written with the run's first file
    split = get_run_split(ds, run.data, run.seed, manifest_dir(results_dir), write=False)

    def pin_split() -> None:
        get_run_split(ds, run.data, run.seed, manifest_dir(results_dir))

    ckpt = checkpoint_path(results_dir, chash)
    trainer = Trainer(run, ds, split, chash, dist)
    if dist.is_main:
        trainer.before_save = pin_split
    if run.acquisition is not None:
        pin_split()  # one process only (the plan refuses active learning under torchrun)
        records = run_active(trainer, run, chash, split, results_dir, log, desc=f"{tag} {run.acquisition}")
        head = f"{len(records)} round(s), last acc_median {records[-1]['acc_median']:.4f}" if records else ""
        return Outcome(tag, chash, "done", records=records, wall_s=trainer.wall_s, headline=head)
    if trainer.resume(ckpt):  # loaded and checked before it is announced
        log(f"{tag}: resuming from {ckpt} at step {trainer.step}")
    result = trainer.run(ckpt, stop_at=stop_at, log_dir=tensorboard_dir(results_dir, chash), desc=tag, resume=False)
    if result is None:
        log(f"{tag}: stopped at step {trainer.step}, checkpoint kept at {ckpt}")
        return Outcome(tag, chash, "stopped", f"stopped at step {trainer.step}")
    if not dist.is_main:
        return Outcome(tag, chash, "done", wall_s=result.wall_s)
    record = make_record(run, chash, split, result, results_dir)
    pin_split()
    path = write_record(results_dir, record)
    remove_checkpoint(ckpt)
    if announce:
        log(f"{tag}: acc_median {record['acc_median']:.4f} ({result.wall_s:.1f} s) -> {path}")
    head = f"acc_median {record['acc_median']:.4f}"
    return Outcome(tag, chash, "done", records=[record], wall_s=result.wall_s, headline=head, record_path=str(path))


def quiet(p: PlannedRun) -> PlannedRun:
    """``p`` without its per-step progress bar (``train.progress`` is outside the config hash): for runs that share
    a terminal with others."""
    train = dataclasses.replace(p.run.train, progress=False)
    return dataclasses.replace(p, run=dataclasses.replace(p.run, train=train))


def pending(planned: list[PlannedRun], results_dir: Path) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(runs still to train, runs already recorded) of ``planned``."""
    done = recorded(results_dir)
    todo = [p for p in planned if (p.config_hash, p.last_round) not in done]
    return todo, [p for p in planned if (p.config_hash, p.last_round) in done]


def run_planned(
    planned: list[PlannedRun],
    results_dir: Path,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    stop_at: int | None = None,
    dist: Dist = SINGLE,
) -> list[dict[str, Any]]:
    """Train every planned run not yet recorded, one after another in this process (under torchrun: every rank
    trains each run in turn); returns the new records."""
    records, failed = [], []
    for i, p in enumerate(planned, 1):
        tag = f"[{i}/{len(planned)}] {p.tag}"
        try:
            records += run_one(p, results_dir, log, stop_at, tag=tag, dist=dist).records
        except (DivergenceError, RunMemoryError) as exc:  # a failure of this run alone: the others go on
            if isinstance(exc, RunMemoryError) and dist.active:
                raise  # one rank alone ran out: the others wait in a collective, so this process ends (torchrun
                # then stops them) rather than move on to the next run's collectives out of step
            log(f"{tag}: failed: {exc}")
            failed.append((exc, f"{tag}: {exc}"))
    if failed:
        what = "diverged" if all(isinstance(e, DivergenceError) for e, _ in failed) else "failed"
        raise type(failed[0][0])(
            f"{len(failed)} of {len(planned)} run(s) {what}, no record written for them: {failed[0][1]}"
        )
    return records


def run_recipe(
    recipe: RecipeConfig,
    results_dir: Path,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    stop_at: int | None = None,
) -> list[dict[str, Any]]:
    """Plan ``recipe`` and run it (the programmatic form of ``ssl-bench run``)."""
    return run_planned(plan(recipe, results_dir), results_dir, log, stop_at)
