"""One run on several processes (train/distributed.py): gloo on CPU with 2 processes matches 1 process of the same
global batch with train.sync_bn, resumes exactly at the same world size, refuses another, and torchrun runs it."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from ssl_bench.algorithms import Ranks
from ssl_bench.augment.views import Batch
from ssl_bench.data import load_data
from ssl_bench.data.splits import get_run_split
from ssl_bench.errors import CheckpointError
from ssl_bench.plan import load_recipe, plan
from ssl_bench.results.store import load_records
from ssl_bench.train import Trainer
from ssl_bench.train.distributed import SINGLE, Dist, GlobalBatchNorm, mean_over_ranks, shard
from tests.conftest import ROOT

FIXMATCH = str(ROOT / "recipes/digits/fixmatch.toml")
SETS = [
    "grid.seeds=[1]",
    "grid.n_labels=[20]",
    "train.batch_size=8",
    "train.steps=6",
    "train.eval_every=3",
    "train.progress=false",
    "train.memory_format=contiguous",
    "train.precision=fp32",  # the tolerances below are fp32's (auto is bf16 on CPUs with native bf16)
    "augment.strong=randaugment",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_trainer(results, sets, d=SINGLE, recipe=FIXMATCH):
    (p,) = plan(load_recipe(recipe, sets), results, world=d.world)
    ds = load_data(p.run.data)
    split = get_run_split(ds, p.run.data, p.run.seed, results / "splits")
    return Trainer(p.run, ds, split, p.config_hash, d)


def steps(trainer, k, d):
    losses = [float(mean_over_ranks(trainer.train_step()["loss"], d)) for _ in range(k)]
    return losses, [t.detach().clone() for t in trainer.algorithm.state_dict().values()]  # weights and buffers


def worker(rank, world, port, results, sets, mode, out, recipe=FIXMATCH):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    d = Dist(rank, world, rank)
    d.init("gloo")
    try:
        trainer = make_trainer(results, sets, d, recipe)
        if mode == "no-ranks":  # a negative control: every rank keeps its own slice's statistics
            trainer.algorithm.ranks = Ranks()
        if mode in ("steps", "no-ranks"):
            result = steps(trainer, 3, d)
        else:  # "resume": 2 steps, checkpoint, a fresh trainer resumes and takes 2 more
            ckpt = results / "ckpt.pt"
            trainer.run(ckpt, stop_at=2, resume=False)
            d.barrier()  # rank 0 wrote the checkpoint
            again = make_trainer(results, sets, d)
            assert again.resume(ckpt) and again.step == 2
            result = steps(again, 2, d)
        if rank == 0:
            torch.save(result, out)
    finally:
        d.close()


def spawn(tmp_path, world, sets, mode="steps", name="", recipe=FIXMATCH):
    out = tmp_path / f"out-{world}-{mode}{name}.pt"
    results = tmp_path / f"results-{world}-{mode}{name}"
    results.mkdir()
    args = (world, free_port(), results, sets, mode, out, recipe)
    mp.start_processes(worker, args=args, nprocs=world, join=True, start_method="spawn")
    return torch.load(out)


def test_shard_gives_each_rank_its_contiguous_slice():
    x, y, u = torch.arange(8.0), torch.arange(8), torch.arange(16.0)
    batch = Batch(x=(x,), y=y, u=(u, u + 100))
    got = shard(batch, Dist(1, 2, 1))
    assert got.x[0].tolist() == [4.0, 5.0, 6.0, 7.0] and got.y.tolist() == [4, 5, 6, 7]
    assert got.u[0].tolist() == list(range(8, 16)) and got.u[1][0] == 108 and got.y_target is None
    assert shard(batch, Dist()) is batch


def test_global_batchnorm_is_plain_batchnorm_on_one_process():
    torch.manual_seed(0)
    plain, ours = nn.BatchNorm2d(3, momentum=0.1), GlobalBatchNorm(3, momentum=0.1)
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(ours(x), plain(x))
    torch.testing.assert_close(ours.running_var, plain.running_var)


def test_a_checkpoint_of_another_world_size_is_refused(tmp_path):
    trainer = make_trainer(tmp_path, SETS)
    trainer.train_step()
    ckpt = tmp_path / "ckpt.pt"
    trainer.save(ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["world_size"] == 1
    state["world_size"] = 2
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=r"trained on 2 process\(es\), this run has 1: resume it with the same"):
        make_trainer(tmp_path, SETS).resume(ckpt)


def test_plan_refuses_what_cannot_split(tmp_path):
    from ssl_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="mixmatch cannot train on 2 processes: its MixUp partners"):
        plan(load_recipe(ROOT / "recipes/digits/mixmatch.toml", ["grid.seeds=[1]"]), tmp_path, world=2)
    with pytest.raises(ConfigError, match="freematch cannot train on 2 processes: its fairness term is a non-linear"):
        plan(load_recipe(ROOT / "recipes/digits/freematch.toml", ["grid.seeds=[1]"]), tmp_path, world=2)
    with pytest.raises(ConfigError, match="train.batch_size 9 does not split over 2 processes"):
        plan(load_recipe(FIXMATCH, [*SETS, "train.batch_size=9"]), tmp_path, world=2)
    assert plan(load_recipe(FIXMATCH, SETS), tmp_path, world=2)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_sync_bn(tmp_path):
    sync = [*SETS, "train.sync_bn=true"]
    one_losses, one_params = spawn(tmp_path, 1, sync)
    two_losses, two_params = spawn(tmp_path, 2, sync)
    torch.testing.assert_close(two_losses, one_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(two_params, one_params, strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-5)
    # per-rank BN statistics (the default) is a different computation: the check above can tell them apart
    per_rank_losses, _ = spawn(tmp_path, 2, SETS, name="-per-rank-bn")
    assert abs(per_rank_losses[0] - one_losses[0]) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pseudo_label", "mean_teacher", "uda", "flexmatch", "softmatch", "dash"])
def test_stateful_algorithms_on_two_processes_match_one_on_the_global_batch(tmp_path, name):
    """Per-image selections (FlexMatch), running statistics (SoftMatch), kept losses and selected counts (Dash), the
    mask fraction of the broadcast loss (Pseudo-Label), TSA's kept count (UDA, with TSA on) and the teacher's batch
    statistics (Mean Teacher) cover the global batch through Algorithm.ranks: with sync_bn, two ranks end with the
    weights and buffers of one process. (lr 0.003: at the recipe's 0.03, rounding differences of the global-batch
    BatchNorm grow within three steps to 3e-4 in the weights whenever unlabeled gradients flow, FixMatch's included.)"""
    extra = {  # thresholds that some images pass within the few steps, so that the state under test is not empty
        "pseudo_label": ["algorithm.threshold=0.3"],
        "uda": ['algorithm.tsa="linear"', "algorithm.threshold=0.3"],
        "flexmatch": ["algorithm.threshold=0.3"],
    }.get(name, [])
    sync = [*SETS, "train.sync_bn=true", "train.lr=0.003", *extra]
    recipe = str(ROOT / f"recipes/digits/{name}.toml")
    one_losses, one_state = spawn(tmp_path, 1, sync, recipe=recipe)
    two_losses, two_state = spawn(tmp_path, 2, sync, recipe=recipe)
    torch.testing.assert_close(two_losses, one_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(two_state, one_state, strict=True):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        else:
            assert torch.equal(a, b)
    if name == "flexmatch":  # without the gather, each rank writes only its own slice's selections
        _, alone = spawn(tmp_path, 2, sync, mode="no-ranks", recipe=recipe)
        selected = list(make_trainer(tmp_path / "x", sync, recipe=recipe).algorithm.state_dict()).index(
            "selected_label"
        )
        assert not torch.equal(alone[selected], one_state[selected])
        assert torch.equal(two_state[selected], one_state[selected])


@pytest.mark.slow
def test_two_gloo_processes_resume_exactly(tmp_path):
    sync = [*SETS, "train.sync_bn=true"]
    straight_losses, _ = spawn(tmp_path, 2, sync)  # steps 1-3
    resumed_losses, _ = spawn(tmp_path, 2, sync, mode="resume")  # steps 1-2, checkpoint, resume, steps 3-4
    assert resumed_losses[0] == straight_losses[2]  # step 3 after the resume is bit-identical


@pytest.mark.slow
def test_torchrun_trains_one_run_and_records_its_world(tmp_path):
    results = tmp_path / "results"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ssl_bench.cli"]
    args = ["run", str(ROOT / "recipes/smoke.toml"), "--results-dir", str(results), "--quiet"]
    sets = ["--set", "train.steps=40", "--set", "train.sync_bn=true", "--set", "train.precision=fp32"]
    done = subprocess.run([*torchrun, *args, *sets], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (rec,) = load_records(results)
    assert rec["world_size"] == 2 and len(rec["devices"]) == 2 and rec["steps"] == 40
    assert rec["config"]["train"]["sync_bn"] is True
    again = subprocess.run([*torchrun, *args, *sets], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already recorded" in again.stderr
    mix = ["run", str(ROOT / "recipes/digits/mixmatch.toml"), "--results-dir", str(results)]
    refused = subprocess.run([*torchrun, *mix], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "ssl-bench: error: mixmatch cannot train on 2 processes: its MixUp partners" in refused.stderr
    assert len(load_records(results)) == 1


def guard_worker(rank, world, port, out):
    from ssl_bench.config import TrainConfig
    from ssl_bench.errors import DivergenceError
    from ssl_bench.train.divergence import DivergenceGuard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    d = Dist(rank, world, rank)
    d.init("gloo")
    try:
        guard = DivergenceGuard(TrainConfig(), 10, torch.device("cpu"), d)
        for step in range(1, 6):  # rank 1's shard alone gives a non-finite loss, at step 4
            guard.watch(step, torch.tensor(float("nan") if (rank, step) == (1, 4) else 0.5))
        try:
            guard.check(5, torch.tensor(0.5), [(5, 0.4)])
            said = "went on"
        except DivergenceError as exc:
            said = str(exc)
        (out / f"rank{rank}.txt").write_text(said)
    finally:
        d.close()


def test_ranks_agree_on_divergence_that_one_rank_alone_saw(tmp_path):
    """Rank 1 saw the non-finite loss, rank 0 did not (its shard was finite): both stop at the same evaluation, with
    the same step, instead of rank 1 alone leaving rank 0 waiting in the next step's all-reduce."""
    mp.start_processes(guard_worker, args=(2, free_port(), tmp_path), nprocs=2, join=True, start_method="spawn")
    said = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    assert said[0] == said[1] and said[0].startswith("the loss became non-finite at step 4;"), said
