"""Expand a recipe into runs, skip what is already recorded, train the rest, and record each one."""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_bench.active.acquisition import Acquisition
from ssl_bench.active.loop import run_active, schedule
from ssl_bench.algorithms import get_algorithm
from ssl_bench.augment import create_policy
from ssl_bench.config import RecipeConfig, RunConfig, run_hash
from ssl_bench.data import load_data
from ssl_bench.data.pairs import SETTINGS, check_setting
from ssl_bench.data.splits import DASplit, DASplitId, Split, SplitId, get_run_split, run_split_id
from ssl_bench.errors import ConfigError
from ssl_bench.models import create_model
from ssl_bench.results import checkpoint_path, load_records, make_record, manifest_dir, tensorboard_dir, write_record
from ssl_bench.train import Trainer
from ssl_bench.train.optim import EMA_BUFFERS, LR_SCHEDULES, OPTIMIZERS
from ssl_bench.utils import resolve_device


def expand(recipe: RecipeConfig) -> list[RunConfig]:
    """One RunConfig per (label budget[, pool size], seed[, acquisition]) of the recipe's grid, budgets outermost.

    An active-learning recipe (non-empty ``active.acquisitions``) trains each run for its whole label-growth
    schedule: ``train.steps`` is derived from it. A domain-adaptation recipe (setting uda or ssda) varies the
    target labels per class instead of the label budget: each k of ``grid.target_labels`` is a uda run (k = 0) or
    an ssda run with k labels per class.
    """
    data = recipe.data
    if not recipe.grid.n_labels or not recipe.grid.seeds:
        raise ConfigError("grid.n_labels and grid.seeds must each list at least one value")
    for name in recipe.active.acquisitions:
        Acquisition.parse(name)
    if data.setting == "ssl" or data.setting not in SETTINGS:
        check_setting(data)
        if recipe.grid.target_labels:
            raise ConfigError("grid.target_labels applies to settings uda and ssda, not ssl")
        variants = [dataclasses.replace(data, n_labels=n) for n in recipe.grid.n_labels]
    else:
        if recipe.active.acquisitions:
            raise ConfigError(f"active learning is not available in setting {data.setting}; use setting ssl")
        ks = recipe.grid.target_labels or [data.target_labels]
        for k in ks:
            if k < 0:
                raise ConfigError(f"grid.target_labels: labels per class must be >= 0, got {k}")
        variants = [dataclasses.replace(data, setting="ssda" if k else "uda", target_labels=k, n_labels=0) for k in ks]
        for variant in variants:
            check_setting(variant)
    runs = []
    pools = recipe.grid.n_unlabeled or [data.n_unlabeled]
    for variant, pool in itertools.product(variants, pools):
        for seed in recipe.grid.seeds:
            if seed < 0:
                raise ConfigError(f"grid.seeds: seeds must be >= 0, got {seed}")
            for acquisition in recipe.active.acquisitions or [None]:
                train = recipe.train
                if acquisition is not None:
                    steps = schedule(recipe.active, variant.n_labels, train.batch_size)[-1][0]
                    train = dataclasses.replace(train, steps=steps)
                runs.append(
                    RunConfig(
                        seed=seed,
                        data=dataclasses.replace(variant, n_unlabeled=pool),
                        model=recipe.model,
                        augment=recipe.augment,
                        train=train,
                        algorithm=recipe.algorithm,
                        active=recipe.active,
                        acquisition=acquisition,
                    )
                )
    return runs


def split_id(run: RunConfig) -> SplitId | DASplitId:
    return run_split_id(run.data, run.seed)


def check_train_config(run: RunConfig) -> None:
    tc = run.train
    for key in ("steps", "batch_size", "eval_every", "median_k", "eval_batch_size"):
        if getattr(tc, key) <= 0:
            raise ConfigError(f"train.{key} must be positive, got {getattr(tc, key)}")
    if not 0.0 <= tc.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must lie in [0, 1), got {tc.ema_decay}")
    if tc.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer: unknown optimizer {tc.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if tc.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule: unknown schedule {tc.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    if tc.ema_buffers not in EMA_BUFFERS:
        raise ConfigError(f"train.ema_buffers must be one of {', '.join(EMA_BUFFERS)}, got {tc.ema_buffers!r}")
    resolve_device(tc.device)
    for role in ("weak", "strong"):
        create_policy(getattr(run.augment, role), run.augment, hflip=True)


def check_pools(run: RunConfig, n_train: int, split: Split | DASplit) -> None:
    """Pools large enough for ``data.n_unlabeled`` and for every round of an active-learning schedule."""
    available = len(split.pool(n_train, split.labeled, include_labeled=False))
    if run.acquisition is not None and run.active.final - len(split.labeled) > available:
        raise ConfigError(
            f"active.final = {run.active.final} needs {run.active.final - len(split.labeled)} more labels but only "
            f"{available} unlabeled images remain in the pool of {split.id}"
        )
    pool = len(split.pool(n_train, split.labeled, run.data.unlabeled_includes_labeled))
    if run.data.n_unlabeled > pool:
        raise ConfigError(f"data.n_unlabeled = {run.data.n_unlabeled} is more than the {pool} unlabeled images")
    if run.data.n_unlabeled < 0:
        raise ConfigError("data.n_unlabeled must be >= 0")


def plan(recipe: RecipeConfig, results_dir: Path) -> list[tuple[RunConfig, str, Split]]:
    """Validate every run before anything is written: data present, splits drawable, model buildable."""
    planned = []
    manifests = manifest_dir(results_dir)
    for run in expand(recipe):
        check_train_config(run)
        ds = load_data(run.data)
        split = get_run_split(ds, run.data, run.seed, manifests, write=False)
        check_pools(run, len(ds.train_labels), split)
        planned.append((run, run_hash(run), split))
    first = planned[0][0]
    ds = load_data(first.data)
    model = create_model(first.model, ds.num_classes, ds.channels, ds.image_size)
    algorithm_cls = get_algorithm(first.algorithm.name)
    algorithm_cls(model, first.algorithm, ds.num_classes).views()
    unsupported = sorted({run.data.setting for run, _, _ in planned} - set(algorithm_cls.settings))
    if unsupported:
        raise ConfigError(
            f"algorithm {first.algorithm.name} does not support setting {unsupported[0]}; it runs in: "
            f"{', '.join(algorithm_cls.settings)}"
        )
    return planned


def run_recipe(
    recipe: RecipeConfig,
    results_dir: Path,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    stop_at: int | None = None,
) -> list[dict[str, Any]]:
    """Run every not-yet-recorded entry of ``recipe``; interrupted runs resume from their checkpoint."""
    results_dir = Path(results_dir)
    planned = plan(recipe, results_dir)
    done = {(r["config_hash"], r.get("round")) for r in load_records(results_dir)}
    records = []
    for i, (run, chash, _) in enumerate(planned, 1):
        tag = f"[{i}/{len(planned)}] {run.algorithm.name} {split_id(run)}"
        last_round = None
        if run.acquisition is not None:  # an active run is done once its last round is recorded
            last_round = len(schedule(run.active, run.data.n_labels, run.train.batch_size)) - 1
        if (chash, last_round) in done:
            log(f"{tag}: already recorded (config {chash[:12]}), skipped")
            continue
        ds = load_data(run.data)
        split = get_run_split(ds, run.data, run.seed, manifest_dir(results_dir))
        ckpt = checkpoint_path(results_dir, chash)
        trainer = Trainer(run, ds, split, chash)
        if run.acquisition is not None:
            records += run_active(trainer, run, chash, split, results_dir, log, desc=f"{tag} {run.acquisition}")
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
