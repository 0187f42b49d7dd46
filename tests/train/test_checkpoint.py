"""The checkpoint format (train/checkpoint.py): its fields are those of format 1, a load restores every one of them,
and a checkpoint of another world size is refused in one line."""

import pytest
import torch

from ssl_bench.data.datasets import load_dataset
from ssl_bench.data.splits import get_split
from ssl_bench.errors import CheckpointError
from ssl_bench.identity import run_hash
from ssl_bench.plan import expand, load_recipe, split_id
from ssl_bench.train import Trainer, checkpoint
from tests.conftest import ROOT

# the fields of format 1, in the order written: checkpoints saved by earlier versions hold exactly these
FORMAT_1 = [
    "format",
    "config_hash",
    "split_hash",
    "world_size",
    "step",
    "algorithm",
    "ema",
    "optimizer",
    "rng",
    "augment",
    "scaler",
    "labeled_pool",
    "streams",
    "history",
    "wall_s",
]


def ctaugment_trainer():
    sets = ["train.steps=12", "train.eval_every=4", "algorithm.view=strong", "augment.strong='ctaugment'"]
    (run,) = expand(load_recipe(ROOT / "recipes/smoke.toml", sets))
    ds = load_dataset(run.data)
    split = get_split(ds, split_id(run), "balanced", None)
    return lambda: Trainer(run, ds, split, run_hash(run))


def same(a, b, where="checkpoint"):
    """Recursive equality of nested dicts, lists and tensors (``==`` on tensors compares element-wise)."""
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_format_1_fields_and_an_exact_round_trip(tmp_path):
    make = ctaugment_trainer()
    trainer = make()
    assert trainer.run(tmp_path / "c.pt", stop_at=6) is None
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert list(saved) == FORMAT_1 and saved["format"] == checkpoint.FORMAT == 1
    assert saved["step"] == 6 and [s for s, _ in saved["history"]] == [4] and list(saved["augment"]) == ["ctaugment"]
    fresh = make()
    assert fresh.resume(tmp_path / "c.pt")
    again = checkpoint.capture(fresh)
    # the RNG states are restored in the process, so both captures see the same torch state; wall_s is a float
    same({k: v for k, v in saved.items() if k != "wall_s"}, {k: v for k, v in again.items() if k != "wall_s"})
    assert again["wall_s"] == saved["wall_s"]


def test_another_world_size_is_refused(tmp_path):
    trainer = ctaugment_trainer()()
    trainer.run(tmp_path / "c.pt", stop_at=4)
    with pytest.raises(CheckpointError, match=r"trained on 1 process\(es\), this run has 2") as err:
        checkpoint.read(tmp_path / "c.pt", trainer.config_hash, trainer.split.hash, world=2)
    assert "\n" not in str(err.value)
    assert not trainer.resume(tmp_path / "missing.pt")
