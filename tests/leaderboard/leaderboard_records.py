"""Hand-made run records for the leaderboard tests: known accuracies on known splits."""

from __future__ import annotations

from pathlib import Path

from ssl_bench.results.store import write_record


def record(algorithm, n, seed, acc, dataset="digits", augment="weak", **kw):
    base = {k: None for k in ("source", "target", "round", "acquisition", "git_dirty")}
    base.update(
        algorithm=algorithm,
        dataset=dataset,
        split=f"{dataset}.{seed}@{n}-0",
        split_hash=f"{dataset}-{seed}-{n}",  # one labeled split per (seed, budget), shared by every algorithm
        n_labels=n,
        seed=seed,
        setting="ssl",
        acc_median=acc,
        median_k=5,
        acc_final=acc,
        acc_history=[[50, acc / 2], [100, acc]],
        model="small_cnn",
        augmentation=augment,
        steps=100,
        images_seen=6400,
        wall_s=60.0,
        steps_per_s=100.0,
        device="cpu",
        config={"model": {"width": 1}},
        config_hash=f"{algorithm}-{dataset}-{n}-{seed}".ljust(64, "0"),
        git_commit="abcdef1234567890",
        versions={},
        created_at="now",
        recipe={"name": f"{dataset}-{algorithm}", "description": f"{algorithm} on {dataset}"},
    )
    base.update(kw)
    return base


def write_table(results: Path, rows: dict[str, list[float]], n=20, dataset="digits", **kw) -> None:
    """One record per (algorithm, seed): ``rows[algorithm][i]`` is the accuracy (0-1) of seed i + 1."""
    for algorithm, accs in rows.items():
        for i, acc in enumerate(accs):
            write_record(results, record(algorithm, n, i + 1, acc, dataset=dataset, **kw))
