import json
import re

from ssl_bench.leaderboard import render
from ssl_bench.leaderboard.tables import records_frame, ssl_tables
from ssl_bench.results.store import write_record


def rec(algorithm, n, seed, acc, **kw):
    base = {k: None for k in ("source", "target", "round", "acquisition", "git_commit", "git_dirty")}
    base.update(
        algorithm=algorithm,
        dataset="digits",
        split=f"digits.{seed}@{n}-0",
        split_hash="h",
        n_labels=n,
        seed=seed,
        setting="ssl",
        acc_median=acc,
        median_k=5,
        acc_final=acc,
        acc_history=[[1, acc]],
        model="small_cnn",
        steps=100,
        images_seen=6400,
        wall_s=1.0,
        steps_per_s=100.0,
        device="cpu",
        config={},
        config_hash=f"{algorithm}{n}{seed}" + "0" * 50,
        versions={},
        created_at="now",
    )
    base.update(kw)
    return base


def test_mean_std_n_per_budget(tmp_path):
    for seed, acc in ((1, 0.80), (2, 0.90), (3, 0.85)):
        write_record(tmp_path, rec("supervised", 20, seed, acc))
    write_record(tmp_path, rec("supervised", 40, 1, 0.95))
    write_record(tmp_path, rec("supervised", 40, 2, 0.5, round=3, acquisition="random"))  # active: not here
    (table,) = ssl_tables(records_frame([json.loads(p.read_text()) for p in tmp_path.rglob("*.json")])).values()
    row = table.iloc[0]
    assert row["20 labels"] == "85.00 ± 5.00 (n=3)"
    assert row["40 labels"] == "95.00 ± 0.00 (n=1)"


def test_rows_split_by_protocol(tmp_path):
    write_record(tmp_path, rec("supervised", 20, 1, 0.8))
    write_record(tmp_path, rec("supervised", 20, 2, 0.6, steps=500, config_hash="x" * 64))
    text = render(tmp_path)
    assert "80.00 ± 0.00 (n=1)" in text and "60.00 ± 0.00 (n=1)" in text
    assert "median of the last k evaluations" in text


def test_empty_results(tmp_path):
    assert "No run records yet." in render(tmp_path / "nothing")


def test_augmentations_and_widths_never_mix(tmp_path):
    write_record(tmp_path, rec("fixmatch", 20, 1, 0.9, augmentation="ctaugment+weak"))
    write_record(tmp_path, rec("fixmatch", 20, 2, 0.7, augmentation="randaugment+weak", config_hash="r" * 64))
    write_record(
        tmp_path,
        rec(
            "fixmatch",
            20,
            3,
            0.5,
            augmentation="randaugment+weak",
            config_hash="w" * 64,
            config={"model": {"width": 8}},
        ),
    )
    df = records_frame([json.loads(p.read_text()) for p in tmp_path.rglob("*.json")])
    (table,) = ssl_tables(df).values()
    assert len(table) == 3
    assert set(table["augment"]) == {"ctaugment+weak", "randaugment+weak"}
    assert "small_cnn-8" in set(table["model"])


def test_unlabeled_pool_subsets_never_mix(tmp_path):
    write_record(tmp_path, rec("mixmatch", 20, 1, 0.9))
    write_record(tmp_path, rec("mixmatch", 20, 2, 0.7, config_hash="p" * 64, config={"data": {"n_unlabeled": 300}}))
    (table,) = ssl_tables(records_frame([json.loads(p.read_text()) for p in tmp_path.rglob("*.json")])).values()
    assert sorted(table["pool"]) == ["300", "all"]


def test_minutes_per_run_beside_each_row(tmp_path):
    for seed, wall in ((1, 60.0), (2, 120.0)):
        write_record(tmp_path, rec("fixmatch", 20, seed, 0.9, wall_s=wall))
    write_record(tmp_path, rec("fixmatch", 40, 1, 0.95, wall_s=240.0))
    write_record(tmp_path, rec("supervised", 20, 1, 0.7, wall_s=6.0))
    (table,) = ssl_tables(records_frame(json.loads(p.read_text()) for p in sorted(tmp_path.rglob("*.json")))).values()
    minutes = dict(zip(table["algorithm"], table["min/run"], strict=True))
    assert minutes == {"fixmatch": 2.3, "supervised": 0.1}  # (1 + 2 + 4) / 3 minutes; 6 s
    text = render(tmp_path)
    assert "min/run" in text and re.search(r"\| +2\.3 +\|", text) and re.search(r"\| +0\.1 +\|", text)
