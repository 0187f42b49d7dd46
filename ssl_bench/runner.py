"""Run planned runs: skip what is already recorded, train the rest (resuming interrupted ones), record each one."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_bench.active.loop import run_active
from ssl_bench.config import RecipeConfig
from ssl_bench.data import load_data
from ssl_bench.data.splits import get_run_split
from ssl_bench.plan import PlannedRun, plan
from ssl_bench.results import checkpoint_path, load_records, make_record, manifest_dir, tensorboard_dir, write_record
from ssl_bench.train import Trainer


def run_planned(
    planned: list[PlannedRun],
    results_dir: Path,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    stop_at: int | None = None,
) -> list[dict[str, Any]]:
    """Train every planned run not yet recorded; interrupted runs resume from their checkpoint."""
    results_dir = Path(results_dir)
    done = {(r["config_hash"], r.get("round")) for r in load_records(results_dir)}
    records = []
    for i, p in enumerate(planned, 1):
        run, chash = p.run, p.config_hash
        tag = f"[{i}/{len(planned)}] {p.tag}"
        if (chash, p.last_round) in done:  # an active run is done once its last round is recorded
            log(f"{tag}: already recorded (config {chash[:12]}), skipped")
            continue
        ds = load_data(run.data)
        split = get_run_split(ds, run.data, run.seed, manifest_dir(results_dir))
        ckpt = checkpoint_path(results_dir, chash)
        trainer = Trainer(run, ds, split, chash)
        if run.acquisition is not None:
            records += run_active(trainer, run, chash, split, results_dir, log, desc=f"{tag} {run.acquisition}")
            done.add((chash, p.last_round))
            continue
        if ckpt.exists():
            log(f"{tag}: resuming from {ckpt}")
        result = trainer.run(ckpt, stop_at=stop_at, log_dir=tensorboard_dir(results_dir, chash), desc=tag)
        if result is None:
            log(f"{tag}: stopped at step {trainer.step}, checkpoint kept at {ckpt}")
            continue
        record = make_record(run, chash, split, result, results_dir)
        path = write_record(results_dir, record)
        ckpt.unlink(missing_ok=True)
        done.add((chash, None))
        records.append(record)
        log(f"{tag}: acc_median {record['acc_median']:.4f} ({result.wall_s:.1f} s) -> {path}")
    return records


def run_recipe(
    recipe: RecipeConfig,
    results_dir: Path,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    stop_at: int | None = None,
) -> list[dict[str, Any]]:
    """Plan ``recipe`` and run it (the programmatic form of ``ssl-bench run``)."""
    return run_planned(plan(recipe, results_dir), results_dir, log, stop_at)
