"""The algorithm API beyond views and step: image positions in the batch, what the algorithm knows of its data
(``DataInfo``), the teacher (the EMA model before this step's update), ``Ranks`` on one process, and the conformance
checks that guard them (each shown to fail on an algorithm that breaks its rule)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_bench.algorithms import Algorithm, AlgorithmConfig, DataInfo, Ranks
from ssl_bench.augment import ViewBuilder
from ssl_bench.augment.views import Batch, ViewSpec
from ssl_bench.conformance import (
    BATCH,
    TINY_DATA,
    check_resume_through_trainer,
    check_teacher_unchanged,
    check_unlabeled_labels_unused,
    tiny_batch,
    tiny_data,
    tiny_run,
)
from ssl_bench.data import load_data
from ssl_bench.data.splits import get_run_split
from ssl_bench.plan import load_recipe, plan
from ssl_bench.registry import Registry
from ssl_bench.train import Trainer
from ssl_bench.train.build import construct
from tests.conftest import ROOT


def test_the_batch_carries_the_training_set_positions_of_its_images():
    images, labels = tiny_data()
    spec = ViewSpec(labeled=("none",), unlabeled=("none", "none"), uratio=2)
    policies = {"none": lambda x, g: x}
    builder = ViewBuilder(images, labels, spec, policies, torch.Generator())
    lab, unl = torch.tensor([5, 1, 9]), torch.tensor([40, 3, 63, 12, 7, 30])
    batch = builder.build(lab, unl)
    assert batch.idx_x.tolist() == [5, 1, 9] and batch.idx_u.tolist() == [40, 3, 63, 12, 7, 30]
    assert batch.idx_x.dtype == batch.idx_u.dtype == torch.int64 and batch.idx_target is None
    # row i of every view is image idx[i]: the positions describe the views, not some other order
    torch.testing.assert_close(batch.u[1][2], images[63].float() * 2 / 255 - 1)
    # ssda: the labeled target images apart, or appended to x with their positions
    apart = builder.build(lab, unl, torch.tensor([50, 51]), separate_target=True)
    assert apart.idx_target.tolist() == [50, 51] and apart.idx_x.tolist() == [5, 1, 9]
    joined = builder.build(lab, unl, torch.tensor([50, 51]), separate_target=False)
    assert joined.idx_x.tolist() == [5, 1, 9, 50, 51] and joined.idx_target is None


def test_no_view_means_no_unlabeled_positions():
    images, labels = tiny_data()
    builder = ViewBuilder(images, labels, ViewSpec(labeled=("none",)), {"none": lambda x, g: x}, torch.Generator())
    assert builder.build(torch.tensor([0, 1]), None).idx_u is None


def digits_trainer(tmp_path, *sets):
    (p,) = plan(load_recipe(ROOT / "recipes/digits/fixmatch.toml", ["grid.seeds=[2]", "grid.n_labels=[20]", *sets]),
                tmp_path)  # fmt: skip
    ds = load_data(p.run.data)
    split = get_run_split(ds, p.run.data, p.run.seed, tmp_path / "splits")
    return Trainer(p.run, ds, split, p.config_hash), ds, split


@pytest.mark.parametrize("includes", [True, False])
def test_the_algorithm_is_told_the_sizes_of_its_sets_when_built(tmp_path, includes):
    trainer, ds, split = digits_trainer(tmp_path, f"data.unlabeled_includes_labeled={str(includes).lower()}")
    data = trainer.algorithm.data
    labels = ds.train_labels.numpy()
    n_train = len(labels)
    assert data.n_train == n_train == 1297 and data.num_classes == 10
    assert data.n_labeled == 20 and data.labeled_counts == (2,) * 10
    assert data.labeled_counts == tuple(int((labels[split.labeled] == c).sum()) for c in range(10))
    # the pool: every training image but the 100 validation images (and but the 20 labeled ones if excluded)
    assert data.n_unlabeled == n_train - 100 - (0 if includes else 20) == trainer.feed.n_unlabeled


def test_a_grown_labeled_set_is_told_to_the_algorithm(tmp_path):
    trainer, ds, split = digits_trainer(tmp_path, "data.unlabeled_includes_labeled=false")
    extra = trainer.feed.candidates()[:5]
    trainer.set_labeled(np.concatenate([split.labeled, extra]))
    labels = ds.train_labels.numpy()
    data = trainer.algorithm.data
    assert data.n_labeled == 25 and data.n_unlabeled == 1297 - 100 - 25
    grown = np.concatenate([split.labeled, extra])
    assert data.labeled_counts == tuple(int((labels[grown] == c).sum()) for c in range(10))


def test_a_plugin_with_the_three_argument_constructor_still_gets_its_data():
    @dataclass(frozen=True)
    class OldConfig(AlgorithmConfig):
        name: str = "old"

    class Old(Algorithm):
        Config = OldConfig

        def __init__(self, model, cfg, num_classes):  # written before DataInfo existed
            super().__init__(model, cfg, num_classes)

    algo = construct(Old, torch.nn.Linear(2, 4), OldConfig(), TINY_DATA)
    assert algo.data == TINY_DATA and algo.num_classes == 4


def test_teacher_is_the_ema_model_with_batch_or_running_statistics_and_moves_nothing():
    parts = tiny_run("fixmatch")
    algo, ema = parts.algorithm, parts.ema.model
    with torch.no_grad():  # make the EMA differ from the live model and its running statistics non-trivial
        for p in ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
        ema.train()
        ema(tiny_batch(parts).u[0])
        ema.eval()
    x = tiny_batch(parts, seed=3).u[1]
    state = copy.deepcopy(ema.state_dict())
    copy_train, copy_eval = copy.deepcopy(ema).train(), copy.deepcopy(ema).eval()
    with torch.no_grad():
        want_batch, want_running = copy_train(x), copy_eval(x)
    got_batch, got_running = algo.teacher(x), algo.teacher(x, batch_stats=False)
    torch.testing.assert_close(got_batch, want_batch)
    torch.testing.assert_close(got_running, want_running)
    assert not torch.allclose(got_batch, got_running)  # the two BN behaviours are really different
    assert not torch.allclose(got_batch, algo.model(x))  # the teacher is not the live model
    assert not got_batch.requires_grad and not ema.training
    for k, v in ema.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_teacher_sees_the_ema_before_this_steps_update(tmp_path):
    trainer, _, _ = digits_trainer(tmp_path, "train.precision=fp32")
    for _ in range(2):
        trainer.train_step()
    before = copy.deepcopy(trainer.ema.model)
    seen = {}
    step = trainer.algorithm.step

    def step_with_teacher(batch, progress):
        seen["teacher"] = trainer.algorithm.teacher(batch.u[0])
        seen["input"] = batch.u[0]
        return step(batch, progress)

    trainer.algorithm.step = step_with_teacher
    trainer.train_step()
    with torch.no_grad(), trainer.speed.autocast(trainer.device):
        want = before.train()(seen["input"])  # batch statistics of the EMA weights before the update
    torch.testing.assert_close(seen["teacher"], want)
    after = [p for p in trainer.ema.model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(after, before.parameters(), strict=True))  # the EMA did move


def test_an_algorithm_built_by_hand_has_no_teacher():
    algo = tiny_run("supervised").algorithm
    algo.bind_teacher(None)
    with pytest.raises(RuntimeError, match="has no teacher: build it with train.build.build_run"):
        algo.teacher(torch.zeros(1, 3, 8, 8))


def test_ranks_of_one_process_return_their_input():
    r, t = Ranks(), torch.tensor([1.0, 2.0])
    assert r.world == 1 and r.sum(t) is t and r.mean(t) is t and r.cat(t) is t


# ------------------------------------------------------------------------ the conformance checks can fail


@dataclass(frozen=True)
class BrokenConfig(AlgorithmConfig):
    """Test algorithm (docs/reference/common.md#sources)."""

    name: str = "broken"


class CountsInPython(Algorithm):
    """Keeps a running count as a Python attribute, not a buffer: a checkpoint does not hold it."""

    Config = BrokenConfig

    def __init__(self, model, cfg, num_classes, data=None):
        super().__init__(model, cfg, num_classes, data)
        self.seen = 0

    def views(self):
        return ViewSpec(labeled=("weak",), unlabeled=("weak",), uratio=1)

    def step(self, batch, progress):
        self.seen += 1
        return F.cross_entropy(self.model(batch.x[0]), batch.y) * (1 + 0.1 * self.seen), {}


class MovesTheTeacher(CountsInPython):
    """Updates the teacher's BN statistics by running it in training mode outside ``teacher``."""

    def step(self, batch, progress):
        self._teacher_model.train()(batch.u[0])
        self._teacher_model.eval()
        return F.cross_entropy(self.model(batch.x[0]), batch.y), {}


class LeaksLabels(CountsInPython):
    def step(self, batch, progress):
        return F.cross_entropy(self.model(batch.x[0]), batch.y), {}


@pytest.fixture
def broken(monkeypatch):
    def register(cls):
        reg: Registry = Registry("algorithm")
        reg.add("broken", cls)
        monkeypatch.setattr("ssl_bench.algorithms.ALGORITHMS", reg)
        monkeypatch.setattr("ssl_bench.registry.ALGORITHMS", reg)

    return register


def test_state_outside_buffers_fails_the_resume_check(broken):
    broken(CountsInPython)
    with pytest.raises(AssertionError, match="differs after a resume"):
        check_resume_through_trainer("broken")


def test_a_moved_teacher_fails_its_check(broken):
    broken(MovesTheTeacher)
    with pytest.raises(AssertionError, match="changed the EMA model's .*running_mean"):
        check_teacher_unchanged("broken")


def test_a_batch_field_carrying_unlabeled_labels_fails_its_check(broken, monkeypatch):
    broken(LeaksLabels)
    build = ViewBuilder.build

    def leaky(self, labeled_idx, unlabeled_idx, *args, **kwargs):
        batch = build(self, labeled_idx, unlabeled_idx, *args, **kwargs)
        return Batch(**{**batch.__dict__, "idx_u": self.labels[unlabeled_idx]})  # labels posing as positions

    monkeypatch.setattr(ViewBuilder, "build", leaky)
    with pytest.raises(AssertionError, match="batch field idx_u depends on the labels of unlabeled images"):
        check_unlabeled_labels_unused("broken")


def test_tiny_batches_use_the_tiny_data_sets():
    parts = tiny_run("fixmatch")
    batch = tiny_batch(parts)
    assert parts.algorithm.data == TINY_DATA
    assert batch.idx_x.tolist() == list(range(BATCH)) and batch.idx_u.min() >= BATCH
    assert int(batch.idx_u.max()) < TINY_DATA.n_train
    assert isinstance(TINY_DATA, DataInfo)
