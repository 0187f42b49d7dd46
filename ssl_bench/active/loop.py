"""The label-growth loop (MMA, arXiv 1912.00594; reference-algorithms.md §7.1-§7.3): train, acquire, continue.

The model, optimizer, EMA and schedules are never reset between rounds; after each acquisition only the labeled
pool (and with it the unlabeled pool) changes. Labels are revealed for the selected indices only, and the
indices of every round are saved next to the split manifest, so a run can be audited and resumed exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_bench.active.acquisition import Acquisition, select
from ssl_bench.augment.views import to_input
from ssl_bench.config import ActiveConfig
from ssl_bench.errors import ConfigError, DataError
from ssl_bench.results import checkpoint_path, load_records, make_record, manifest_dir, write_record
from ssl_bench.train import Trainer, median_last
from ssl_bench.utils import atomic_write_text


def schedule(cfg: ActiveConfig, start: int, batch_size: int) -> list[tuple[int, int]]:
    """[(last step of round r, labels during round r)] for r = 0..R: round 0 trains on the start budget, every
    later round first grows the labeled set by ``grow`` (the last round up to ``final``), then trains."""
    if cfg.grow <= 0:
        raise ConfigError(f"active.grow must be positive, got {cfg.grow}")
    if start > cfg.final:
        raise ConfigError(f"the start budget {start} is above active.final = {cfg.final}")
    if cfg.interval_unit not in ("steps", "images"):
        raise ConfigError(f"active.interval_unit must be steps or images, got {cfg.interval_unit!r}")
    per = cfg.interval if cfg.interval_unit == "steps" else cfg.interval // batch_size
    first = cfg.first_interval or per
    if cfg.interval_unit == "images" and cfg.first_interval:
        first = cfg.first_interval // batch_size
    if per <= 0 or first <= 0:
        raise ConfigError("active.interval (and active.first_interval) must give at least one step per round")
    rounds = math.ceil((cfg.final - start) / cfg.grow)
    return [(first + r * per, min(start + r * cfg.grow, cfg.final)) for r in range(rounds + 1)]


@torch.no_grad()
def candidate_predictions(trainer: Trainer, candidates: np.ndarray, aug_k: int, batch: int = 1024):
    """EMA-model probabilities on the candidates, un-augmented or averaged over ``aug_k`` weak augmentations
    (the ``.aug`` variant, which the reference parses but never enables, §7.4), and pooled raw-model embeddings."""
    probs, feats = [], []
    model, raw = trainer.ema.model, trainer.algorithm.model
    was_training = raw.training
    raw.eval()
    weak = trainer.probe_base
    for start in range(0, len(candidates), batch):
        idx = torch.as_tensor(candidates[start : start + batch]).to(trainer.device)
        images = trainer.train_images[idx]
        if aug_k:
            p = sum(model(to_input(weak(images, trainer.generator))).softmax(1) for _ in range(aug_k)) / aug_k
        else:
            p = model(to_input(images)).softmax(1)
        probs.append(p.cpu())
        feats.append(raw.embed(to_input(images)).cpu())
    raw.train(was_training)
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


def acquire(trainer: Trainer, acq: Acquisition, k: int, rnd: int, aug_k: int) -> np.ndarray:
    """Dataset indices of ``k`` new images to label, chosen among the unlabeled training images."""
    n_train = len(trainer.ds.train_labels)
    keep = np.ones(n_train, dtype=bool)
    keep[trainer.split.valid] = False
    keep[trainer.labeled_pool] = False
    candidates = np.flatnonzero(keep)
    if k > len(candidates):
        raise DataError(f"round {rnd}: {k} images to label but only {len(candidates)} unlabeled images remain")
    rng = np.random.default_rng([trainer.cfg.seed, rnd])
    if acq.measure is None:
        pos = select(acq, k, np.zeros((len(candidates), 1)), None, rng)
    else:
        probs, embeds = candidate_predictions(trainer, candidates, aug_k if acq.aug else 0)
        pixels = trainer.train_images[torch.as_tensor(candidates).to(trainer.device)].float().cpu().numpy()
        pos = select(acq, k, probs, embeds if acq.embedding else pixels, rng)
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
        raise ConfigError(
            "an active-learning round ended without an evaluation: make active.interval a multiple of train.eval_every"
        )
    used = min(k, len(inside))
    return median_last(inside, used), inside[-1][1], used


def run_active(trainer: Trainer, acquisition: str, results_dir: Path, log, desc: str = "") -> list[dict[str, Any]]:
    """Train ``trainer`` through every round of its ``active`` schedule; returns one record per round.

    Resumes from the run's checkpoint; rounds already recorded are not recorded again.
    """
    run, chash, split = trainer.cfg, trainer.config_hash, trainer.split
    acq = Acquisition.parse(acquisition)
    plan = schedule(run.active, len(split.labeled), run.train.batch_size)
    ckpt = checkpoint_path(results_dir, chash)
    header = {"split": split.id, "split_hash": split.hash, "acquisition": acquisition, "config_hash": chash}
    rounds = RoundLog(manifest_dir(results_dir) / f"{split.id}.active-{chash[:12]}.json", header)
    done = {r["round"] for r in load_records(results_dir) if r.get("config_hash") == chash}
    if ckpt.exists():
        trainer.load(ckpt)
        log(f"{desc}: resuming from {ckpt} at step {trainer.step}")
    records, prev_end = [], 0
    for rnd, (end, n_labels) in enumerate(plan):
        if trainer.step < end:
            if len(trainer.labeled_pool) < n_labels:
                added = rounds.added(rnd)
                if added is None:
                    added = acquire(trainer, acq, n_labels - len(trainer.labeled_pool), rnd, run.active.aug_k)
                    rounds.record(rnd, trainer.step, added)
                trainer.set_labeled(np.concatenate([trainer.labeled_pool, np.asarray(added, dtype=np.int64)]))
                trainer.save(ckpt)
            trainer.run(ckpt, stop_at=end, resume=False, desc=f"{desc} round {rnd}")
        if rnd not in done:
            acc, final, used = round_accuracy(trainer.history, prev_end, end, run.train.median_k)
            result = trainer.result(acc_median=acc, acc_final=final, median_k=used)
            record = make_record(run, chash, split, result, results_dir, rnd=rnd, n_labels=len(trainer.labeled_pool))
            write_record(results_dir, record)
            records.append(record)
            log(f"{desc}: round {rnd}, {len(trainer.labeled_pool)} labels, acc_median {acc:.4f}")
        prev_end = end
    ckpt.unlink(missing_ok=True)
    return records
