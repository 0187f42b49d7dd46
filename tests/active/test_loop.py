"""The label-growth loop: schedule, labels revealed only when selected, round records, audit log, exact resume."""

import json

import numpy as np
import pytest

from ssl_bench.active.checks import check_active
from ssl_bench.active.loop import schedule
from ssl_bench.cli import main
from ssl_bench.config import ActiveConfig
from ssl_bench.config_checks import check_ranges
from ssl_bench.data.datasets import load_dataset
from ssl_bench.data.splits import get_split
from ssl_bench.errors import ConfigError
from ssl_bench.identity import run_hash
from ssl_bench.plan import expand, load_recipe, split_id
from ssl_bench.results.store import load_records
from ssl_bench.runner import run_recipe
from ssl_bench.train import Trainer
from tests.conftest import ROOT

ACTIVE = str(ROOT / "recipes/digits/active.toml")
TINY = [
    "grid.seeds=[1]",
    "active.acquisitions=['entropy-direct']",
    "active.final=40",
    "active.first_interval=20",
    "active.interval=20",
    "train.eval_every=10",
    "train.batch_size=16",
    "train.progress=false",
    # 60 steps with bn_momentum 0.01 leave the BN statistics near their start, so test accuracy can sit at chance
    # on one CPU and not another; these tests are about rounds and resume, the detector has its own tests
    "train.divergence=false",
]


def test_schedule_golden_and_errors():
    cfg = ActiveConfig(grow=10, final=60, first_interval=400, interval=150)
    assert schedule(cfg, 20, 32) == [(400, 20), (550, 30), (700, 40), (850, 50), (1000, 60)]
    # 20 -> 45 -> 60: the last round adds only what is left
    assert schedule(ActiveConfig(grow=25, final=60, interval=100), 20, 32) == [(100, 20), (200, 45), (300, 60)]
    images = ActiveConfig(grow=50, final=350, interval=2048 * 1024, interval_unit="images")
    assert schedule(images, 250, 64) == [(32768, 250), (65536, 300), (98304, 350)]
    assert check_active(cfg, 20, 32, eval_every=50) == schedule(cfg, 20, 32)
    with pytest.raises(ConfigError, match="above active.final"):
        check_active(ActiveConfig(final=10), 20, 32, eval_every=50)
    with pytest.raises(ConfigError, match="active.grow must be >= 1, got 0"):  # before any schedule is drawn
        check_ranges(ActiveConfig(grow=0), "active")
    with pytest.raises(ConfigError, match="at least one step per round"):
        check_active(ActiveConfig(interval=16, interval_unit="images"), 20, 32, eval_every=50)
    # rounds end at 400, 550, 700, ...: with evaluations every 100 steps the round (400, 550] has one at 500, but
    # with first_interval 420 the round (420, 490] of interval 70 has none
    assert check_active(cfg, 20, 32, eval_every=100)
    with pytest.raises(ConfigError, match="without an evaluation"):
        check_active(ActiveConfig(grow=10, final=60, first_interval=420, interval=70), 20, 32, eval_every=100)


def test_paper_schedule_matches_the_reference():
    recipe = load_recipe(ROOT / "recipes/cifar10/mma.toml")
    plan = schedule(recipe.active, 250, 64)
    # 75 rounds of 50 after the start budget (docs/algorithms/mma.md#schedule)
    assert len(plan) == 76 and plan[-1][1] == 4000
    assert plan[-1][0] == 169984 * 1024 // 64  # 169,984 kimg of training = 2,719,744 steps


def test_only_selected_labels_are_revealed():
    recipe = load_recipe(ACTIVE, TINY)
    run = expand(recipe)[0]
    ds = load_dataset(run.data)
    split = get_split(ds, split_id(run), "balanced", None)
    trainer = Trainer(run, ds, split, run_hash(run))
    revealed = trainer.feed.labels.cpu()
    assert set(np.flatnonzero(revealed.numpy() >= 0)) == set(split.labeled.tolist())
    assert (revealed[split.labeled] == ds.train_labels[split.labeled]).all()
    extra = np.setdiff1d(np.arange(50), np.concatenate([split.labeled, split.valid]))[:5]
    trainer.feed.set_labeled(np.concatenate([split.labeled, extra]))
    now = trainer.feed.labels.cpu().numpy()
    assert set(np.flatnonzero(now >= 0)) == set(split.labeled.tolist()) | set(extra.tolist())
    unl = trainer.feed.unlabeled.pool.numpy()
    assert not set(unl) & set(extra.tolist()) and not set(unl) & set(split.valid.tolist())


def test_rounds_are_recorded_audited_and_resume_exactly(tmp_path, monkeypatch):
    recipe = load_recipe(ACTIVE, TINY)
    full = run_recipe(recipe, tmp_path / "a", log=lambda s: None)
    assert [r["round"] for r in full] == [0, 1, 2] and [r["n_labels"] for r in full] == [20, 30, 40]
    assert {r["acquisition"] for r in full} == {"entropy-direct"} and full[-1]["steps"] == 60
    (log_file,) = (tmp_path / "a" / "splits").glob("*.active-*.json")
    audit = json.loads(log_file.read_text())
    added = [i for r in audit["rounds"] for i in r["added"]]
    assert len(added) == 20 and len(set(added)) == 20 and audit["acquisition"] == "entropy-direct"
    manifest = json.loads((tmp_path / "a" / "splits" / "digits.1@20-100.json").read_text())
    assert not set(added) & (set(manifest["labeled"]) | set(manifest["valid"]))

    calls = {"n": 0}
    original = Trainer.run

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # die during the second round
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "b", log=lambda s: None)
    monkeypatch.setattr(Trainer, "run", original)
    assert [r["round"] for r in load_records(tmp_path / "b")] == [0]
    resumed = run_recipe(recipe, tmp_path / "b", log=lambda s: None)
    assert [r["round"] for r in resumed] == [1, 2]
    by_round = {r["round"]: r for r in load_records(tmp_path / "b")}
    for r in full:
        assert by_round[r["round"]]["acc_median"] == r["acc_median"]
        assert by_round[r["round"]]["acc_history"] == r["acc_history"]
    assert (
        json.loads(next((tmp_path / "b" / "splits").glob("*.active-*.json")).read_text())["rounds"] == audit["rounds"]
    )


def test_resume_between_the_round_log_and_the_checkpoint_is_exact(tmp_path, monkeypatch):
    """Interrupted after a round's acquisition is logged but before the grown pool is checkpointed: the resume
    takes the logged images and continues as the uninterrupted run did, although ``.aug`` scores draw from the
    training generator."""
    recipe = load_recipe(ACTIVE, [*TINY, "active.acquisitions=['diff2.aug-direct']", "train.checkpoint_every=10"])
    full = run_recipe(recipe, tmp_path / "a", log=lambda s: None)
    calls = {"n": 0}
    original = Trainer.save

    def interrupted(self, path):
        calls["n"] += 1
        if calls["n"] == 3:  # saves at steps 10 and 20 (end of round 0), then after round 1's acquisition
            raise KeyboardInterrupt
        original(self, path)

    monkeypatch.setattr(Trainer, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "b", log=lambda s: None)
    monkeypatch.setattr(Trainer, "save", original)
    (log_file,) = (tmp_path / "b" / "splits").glob("*.active-*.json")
    assert [r["round"] for r in json.loads(log_file.read_text())["rounds"]] == [1]
    run_recipe(recipe, tmp_path / "b", log=lambda s: None)
    by_round = {r["round"]: r for r in load_records(tmp_path / "b")}
    for r in full:
        assert by_round[r["round"]]["acc_history"] == r["acc_history"]
        assert by_round[r["round"]]["acc_raw_final"] == r["acc_raw_final"]


BAD = {
    "start above final": (["active.final=10"], "above active.final"),
    "grow of zero": (["active.grow=0"], "active.grow must be >= 1"),
    "unknown acquisition": (["active.acquisitions=['nosuch-direct']"], "unknown acquisition measure 'nosuch'"),
    "unknown diversification": (["active.acquisitions=['max-spread']"], "unknown diversification 'spread'"),
    "pool too small": (["active.final=1500", "active.grow=500"], "unlabeled images"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_active_inputs(case, tmp_path, capsys):
    overrides, message = BAD[case]
    args = ["run", ACTIVE, "--results-dir", str(tmp_path / "r")]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "r").exists() or not any(p.is_file() for p in (tmp_path / "r").rglob("*"))


def test_exchange_rate_from_records(tmp_path, capsys):
    from ssl_bench.leaderboard.active import exchange_rates
    from ssl_bench.results.store import write_record
    from tests.leaderboard.test_leaderboard import rec

    # acc(L, U): +0.5 point per extra label between 20 and 40, +1 point per 100 unlabeled images at 20 labels
    table = {(20, 100): 0.80, (20, 200): 0.81, (40, 100): 0.89, (40, 200): 0.90}
    for (n, u), acc in table.items():
        cfg = {"seed": 1, "data": {"n_labels": n, "n_unlabeled": u}, "train": {"steps": 100}}
        write_record(
            tmp_path, rec("mixmatch", n, 1, acc, n_unlabeled=u, config=cfg, config_hash=f"{n}{u}".ljust(64, "0"))
        )
    # neither a full-pool run (no data.n_unlabeled subset) nor a pool run of another protocol may enter
    other = {"seed": 1, "data": {"n_labels": 40, "n_unlabeled": 200}, "train": {"steps": 999}}
    write_record(tmp_path, rec("mixmatch", 40, 1, 0.10, n_unlabeled=200, config=other, config_hash="b" * 64))
    full = {"seed": 2, "data": {"n_labels": 20}, "train": {"steps": 100}}
    write_record(tmp_path, rec("mixmatch", 20, 2, 0.10, n_unlabeled=1177, config=full, config_hash="c" * 64))
    rates = exchange_rates(load_records(tmp_path))
    assert len(rates) == 3  # 20 and 40 labels of the 100-step protocol, 40 labels of the 999-step one
    rates = rates[rates["pools"] == 2].set_index("n_labels")
    # label slope at 20 = (90 - 81) / 20 = 0.45 points per label; pool slope = 1 point / 100 images
    assert rates.loc[20, "acc_per_label"] == pytest.approx(0.45)
    assert rates.loc[20, "label_worth_unlabeled"] == pytest.approx(45.0)
    assert np.isnan(rates.loc[40, "acc_per_label"]) or rates.loc[40, "acc_per_label"] is None
    assert main(["exchange-rate", "--results-dir", str(tmp_path)]) == 0
    assert "45" in capsys.readouterr().out
    # the plot is the leaderboard's own: a generation afterwards keeps the file instead of drawing it again
    png = tmp_path / "exchange_rate.png"
    drawn = png.read_bytes()
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    assert png.read_bytes() == drawn
    assert main(["exchange-rate", "--results-dir", str(tmp_path / "none")]) == 2


def test_unlabeled_pool_grid_and_subset():
    recipe = load_recipe(ROOT / "recipes/digits/exchange_rate.toml")
    runs = expand(recipe)
    assert len(runs) == 3 * 2 * 3 and {r.data.n_unlabeled for r in runs} == {300, 1100}
    run = runs[0]
    ds = load_dataset(run.data)
    trainer = Trainer(run, ds, get_split(ds, split_id(run), "balanced", None), run_hash(run))
    assert trainer.feed.n_unlabeled == 300 and len(set(trainer.feed.unlabeled.pool.tolist())) == 300


def test_the_learner_drives_the_trainer_between_rounds(tmp_path):
    from ssl_bench.active.learner import Learner

    recipe = load_recipe(ACTIVE, TINY)
    run = expand(recipe)[0]
    ds = load_dataset(run.data)
    split = get_split(ds, split_id(run), "balanced", None)
    trainer = Trainer(run, ds, split, run_hash(run))
    learner = Learner(trainer)
    candidates = learner.candidates()
    assert not set(candidates) & set(learner.labeled_pool) and len(candidates) == len(ds.train_labels) - 20 - 100
    probs, embeds = learner.predict(candidates[:7], aug_k=2)
    assert probs.shape == (7, 10) and np.allclose(probs.sum(1), 1, atol=1e-5) and len(embeds) == 7
    assert learner.pixels(candidates[:3]).shape == (3, 1, 16, 16)
    assert np.array_equal(learner.pixels(candidates[:2]), ds.train_images[candidates[:2]].float().numpy())
    learner.reveal(candidates[:5])
    assert len(learner.labeled_pool) == 25 and set(candidates[:5]) <= set(learner.labeled_pool)
    # the trainer itself sees the grown pool: its labels are revealed and its algorithm counts 25 labeled images
    assert set(np.flatnonzero(trainer.feed.labels.cpu().numpy() >= 0)) == set(split.labeled) | set(candidates[:5])
    assert trainer.feed.data_info(10).n_labeled == 25
    learner.train_to(10, tmp_path / "ckpt.pt")  # continues in memory and checkpoints where it stops
    assert learner.step == trainer.step == 10 and learner.history is trainer.history and len(trainer.history) == 1
    resumed = Learner(Trainer(run, ds, split, run_hash(run)))
    assert resumed.resume(tmp_path / "ckpt.pt") and resumed.step == 10
    assert np.array_equal(resumed.labeled_pool, learner.labeled_pool)
