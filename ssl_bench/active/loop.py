"""The label-growth loop (MMA, arXiv 1912.00594; docs/algorithms/mma.md#training to docs/algorithms/mma.md#schedule):
train, acquire, continue.

The model, optimizer, EMA and schedules are never reset between rounds; after each acquisition only the labeled
pool (and with it the unlabeled pool) changes. Labels are revealed for the selected indices only, and the
indices of every round are saved next to the split manifest, so a run can be audited and resumed exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ssl_bench.active.acquisition import Acquisition, select
from ssl_bench.active.learner import Learner
from ssl_bench.atomic_write import atomic_write_text, remove_stale_temps
from ssl_bench.config import ActiveConfig, RunConfig
from ssl_bench.data.splits import Split
from ssl_bench.errors import DataError
from ssl_bench.results.layout import checkpoint_path, manifest_dir, remove_checkpoint
from ssl_bench.results.record import make_record
from ssl_bench.results.store import load_records, write_record
from ssl_bench.train import Trainer, median_last


def schedule(cfg: ActiveConfig, start: int, batch_size: int) -> list[tuple[int, int]]:
    """[(last step of round r, labels during round r)] for r = 0..R: round 0 trains on the start budget, every
    later round first grows the labeled set by ``grow`` (the last round up to ``final``), then trains.

    Intervals count steps, or labeled images seen (``interval_unit = "images"``, the reference's kimg x 1024).
    The plan checks the config first (``ssl_bench.active.checks.check_active``).
    """
    per = cfg.interval if cfg.interval_unit == "steps" else cfg.interval // batch_size
    first = cfg.first_interval or per
    if cfg.interval_unit == "images" and cfg.first_interval:
        first = cfg.first_interval // batch_size
    rounds = math.ceil((cfg.final - start) / cfg.grow)
    return [(first + r * per, min(start + r * cfg.grow, cfg.final)) for r in range(rounds + 1)]


def acquire(learner: Learner, acq: Acquisition, k: int, seed: int, rnd: int, aug_k: int) -> np.ndarray:
    """Dataset indices of ``k`` new images to label, chosen among the unlabeled training images.

    Scores use the EMA model's probabilities, un-augmented or averaged over ``aug_k`` weak augmentations (the
    ``.aug`` variant, which the reference parses but never enables, docs/algorithms/mma.md#acquisition); features are
    the pixels or the raw model's pooled embeddings (``-embd``).
    """
    candidates = learner.candidates()
    if k > len(candidates):
        raise DataError(f"round {rnd}: {k} images to label but only {len(candidates)} unlabeled images remain")
    rng = np.random.default_rng([seed, rnd])
    if acq.measure is None:
        pos = select(acq, k, np.zeros((len(candidates), 1)), None, rng)
    else:
        probs, embeds = learner.predict(candidates, aug_k if acq.aug else 0)
        pos = select(acq, k, probs, embeds if acq.embedding else learner.pixels(candidates), rng)
    return candidates[pos]


class RoundLog:
    """The indices added in every round, stored next to the split manifest and checked on resume."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.header = path, header
        self.rounds: list[dict[str, Any]] = []
        if path.exists():
            try:
                data = json.loads(path.read_text())
                stored = {k: data[k] for k in header}
                self.rounds = list(data["rounds"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"active-learning log {path} is unreadable or malformed ({exc})") from None
            if stored != header:
                raise DataError(f"active-learning log {path} belongs to another run or split")

    def added(self, rnd: int) -> list[int] | None:
        for entry in self.rounds:
            if entry["round"] == rnd:
                return list(entry["added"])
        return None

    def record(self, rnd: int, step: int, added: np.ndarray) -> None:
        self.rounds = [e for e in self.rounds if e["round"] != rnd] + [
            {"round": rnd, "step": step, "added": [int(i) for i in added]}
        ]
        atomic_write_text(self.path, json.dumps({**self.header, "rounds": self.rounds}, indent=1) + "\n")


def round_accuracy(history: list[tuple[int, float]], start: int, end: int, k: int) -> tuple[float, float, int]:
    """(median of the last k evaluations in (start, end], the last one, how many were used)."""
    inside = [(s, a) for s, a in history if start < s <= end]
    if not inside:
        raise ValueError(f"no evaluation in steps ({start}, {end}]")  # the plan checks that every round has one
    used = min(k, len(inside))
    return median_last(inside, used), inside[-1][1], used


def run_active(
    trainer: Trainer,
    run: RunConfig,
    chash: str,
    split: Split,
    results_dir: Path,
    log: Callable[[str], None],
    desc: str = "",
) -> list[dict[str, Any]]:
    """Train ``trainer`` through every round of the ``active`` schedule of ``run``; one record per round.

    Resumes from the run's checkpoint; rounds already recorded are not recorded again.
    """
    learner = Learner(trainer)
    acquisition = run.acquisition
    assert acquisition is not None, "run_active needs an active-learning run"
    acq = Acquisition.parse(acquisition)
    plan = schedule(run.active, len(split.labeled), run.train.batch_size)
    ckpt = checkpoint_path(results_dir, chash)
    header = {"split": split.id, "split_hash": split.hash, "acquisition": acquisition, "config_hash": chash}
    rounds = RoundLog(manifest_dir(results_dir) / f"{split.id}.active-{chash[:12]}.json", header)
    done = {r["round"] for r in load_records(results_dir) if r.get("config_hash") == chash}
    if learner.resume(ckpt):
        log(f"{desc}: resuming from {ckpt} at step {learner.step}")
    records, prev_end = [], 0
    for rnd, (end, n_labels) in enumerate(plan):
        if learner.step < end:
            if len(learner.labeled_pool) < n_labels:
                # acquired again on a resume whose log has the round: ``.aug`` scores draw from the training
                # generator, which must advance as in an uninterrupted run; the log's choice is the one used
                added = acquire(learner, acq, n_labels - len(learner.labeled_pool), run.seed, rnd, run.active.aug_k)
                logged = rounds.added(rnd)
                if logged is None:
                    rounds.record(rnd, learner.step, added)
                elif sorted(logged) != sorted(int(i) for i in added):
                    log(f"{desc}: round {rnd}: acquisition chose other images than {rounds.path} says; using the log's")
                    added = np.asarray(logged, dtype=np.int64)
                learner.reveal(np.asarray(added, dtype=np.int64))
                learner.save(ckpt)
            learner.train_to(end, ckpt, desc=f"{desc} round {rnd}")
        if rnd not in done:
            acc, final, used = round_accuracy(learner.history, prev_end, end, run.train.median_k)
            result = learner.result(acc_median=acc, acc_final=final, median_k=used)
            n = len(learner.labeled_pool)
            record = make_record(run, chash, split, result, results_dir, rnd=rnd, n_labels=n)
            write_record(results_dir, record)
            records.append(record)
            log(f"{desc}: round {rnd}, {n} labels, acc_median {acc:.4f}")
        prev_end = end
    remove_checkpoint(ckpt)
    remove_stale_temps(rounds.path)  # the round log is this run's alone too
    return records
