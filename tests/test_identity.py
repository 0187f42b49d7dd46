"""A run's identity (ssl_bench/identity.py): the versioned config hash, re-derived here from its definition."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types

import pytest

from ssl_bench import identity
from ssl_bench.cli import main
from ssl_bench.config import RunConfig
from ssl_bench.identity import HASH_VERSION, NON_SEMANTIC, config_hash, run_hash
from ssl_bench.plan import expand, load_recipe, recipe_from_dict
from ssl_bench.results.layout import record_path
from ssl_bench.results.record import TrainResult, make_record
from ssl_bench.results.store import load_records, write_record
from ssl_bench.runner import recorded
from tests.conftest import ROOT

FIXMATCH = ROOT / "recipes/digits/fixmatch.toml"
# the committed record of FixMatch, digits, 20 labels, seed 1, and the version-1 hash it had before version 2
COMMITTED = ROOT / "leaderboard/runs/digits/fixmatch/digits.1@20-100-d3369a85203d.json"
V1_HASH = "9f14a949ec1dcc72faf688340b0670ba286d65a3ded03f1ffd29546708beacdf"


def first_run(*overrides: str) -> RunConfig:
    return expand(load_recipe(FIXMATCH, list(overrides)))[0]


def test_config_hash_is_the_sha256_of_canonical_json():
    values = {"b": [1, 2.5], "c": "é", "a": {"z": True, "y": None}}
    blob = b'{"a":{"y":null,"z":true},"b":[1,2.5],"c":"\\u00e9"}'  # sorted keys, no spaces, ASCII
    assert config_hash(values) == hashlib.sha256(blob).hexdigest()
    assert config_hash(values) == "cacb16ae3d3ad82abcf2b04a85c30ed4e821881927d934177af229ce3d9cd403"  # sha256sum


def test_run_hash_is_every_semantic_key_and_the_version():
    """Golden, re-derived from the definition: the resolved sections as dataclasses hold them, the keys that only
    say where or how visibly a run executes left out, plus the hash version."""
    values = {
        "grid": {"n_labels": [20], "seeds": [3]},
        "data": {"n_valid": 10},
        "model": {"name": "small_cnn", "width": 1},
        "train": {"steps": 100, "lr": 0.1, "device": "cpu", "threads": 1},
        "algorithm": {"name": "supervised"},
    }
    (run,) = expand(recipe_from_dict(values))
    left_out = {
        "data": {"root", "download"},
        "train": {"device", "progress", "tensorboard", "checkpoint_every", "eval_batch_size", "cpu_malloc", "threads"}
        | {"divergence", "chance_evals", "chance_warmup", "chance_margin"},
    }
    expected = {"config_hash_version": 2, "seed": 3}
    for section in ("data", "model", "augment", "train", "algorithm"):
        fields = dataclasses.asdict(getattr(run, section))
        expected[section] = {k: v for k, v in fields.items() if k not in left_out.get(section, set())}
    assert expected["train"]["lr"] == 0.1 and "threads" not in expected["train"] and "root" not in expected["data"]
    blob = json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()
    assert run_hash(run) == hashlib.sha256(blob).hexdigest()


def test_the_version_is_part_of_the_hash(monkeypatch):
    run = first_run()
    before = run_hash(run)
    monkeypatch.setattr(identity, "HASH_VERSION", HASH_VERSION + 1)
    assert run_hash(run) != before


@pytest.mark.parametrize(
    "override",
    [
        "train.lr=0.1",
        'train.decay_scope="all"',
        'train.precision="fp32"',
        'train.memory_format="contiguous"',
        'train.compile="model"',
        "train.sync_bn=true",
        "data.n_unlabeled=500",
        'augment.flip="always"',
        'augment.flip="never"',
        "model.width=2",
        "algorithm.threshold=0.9",
        "grid.seeds=[7]",
    ],
)
def test_a_semantic_key_changes_the_hash(override):
    assert run_hash(first_run(override)) != run_hash(first_run())


@pytest.mark.parametrize(
    "override",
    [
        'train.device="cpu"',
        "train.threads=1",
        "train.progress=false",
        "train.tensorboard=true",
        "train.eval_batch_size=64",
        "train.checkpoint_every=7",
        'train.cpu_malloc="keep"',
        "train.divergence=false",
        'data.root="/elsewhere"',
        'name="another-name"',
        'description="another description"',
        "augment.flip=true",  # the old boolean is an alias of "dataset", the default: the same run
    ],
)
def test_where_and_how_visibly_a_run_executes_keeps_the_hash(override):
    assert run_hash(first_run(override)) == run_hash(first_run())


def test_every_non_semantic_key_is_a_config_key():
    run = first_run()
    for section, keys in NON_SEMANTIC.items():
        fields = {f.name for f in dataclasses.fields(getattr(run, section))}
        assert set(keys) <= fields, sorted(set(keys) - fields)


def test_a_new_record_states_its_hash_version(tmp_path):
    run = first_run()
    split = types.SimpleNamespace(id="digits.1@20-100", hash="0" * 64)
    result = TrainResult(
        acc_history=[(10, 0.5)],
        acc_median=0.5,
        acc_final=0.5,
        median_k=1,
        acc_raw_final=0.5,
        steps=10,
        images_seen=640,
        wall_s=1.0,
        device="cpu",
        augmentation="ctaugment+weak",
        flip=False,
        n_unlabeled=100,
        speed={},
    )
    record = make_record(run, run_hash(run), split, result, tmp_path)
    assert record["config_hash_version"] == 2 and record["config_hash"] == run_hash(run)
    keys = list(record)
    assert keys.index("config_hash_version") == keys.index("config_hash") + 1
    write_record(tmp_path, record)
    (read,) = load_records(tmp_path)
    assert read["config_hash_version"] == 2


def test_a_version_1_record_is_another_identity_and_still_read(tmp_path, capsys):
    """A record from before version 2 in a user's results directory: read, shown on the leaderboard, and not taken
    for the run of today's recipe (that run's hash is another), which trains again beside it."""
    record = json.loads(COMMITTED.read_text())
    assert record["config_hash_version"] == 2
    del record["config_hash_version"]
    record["config_hash"] = V1_HASH
    path = write_record(tmp_path, record)
    assert path.name == "digits.1@20-100-9f14a949ec1d.json" and path == record_path(tmp_path, record)
    (read,) = load_records(tmp_path)
    assert "config_hash_version" not in read
    assert recorded(tmp_path) == {(V1_HASH, None)}
    run = next(r for r in expand(load_recipe(FIXMATCH)) if r.seed == 1 and r.data.n_labels == 20)
    assert run_hash(run) == json.loads(COMMITTED.read_text())["config_hash"] != V1_HASH
    assert (run_hash(run), None) not in recorded(tmp_path)
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    assert "runs/digits/fixmatch/digits.1@20-100-9f14a949ec1d.json" in (tmp_path / "index.html").read_text()
    assert "fixmatch" in capsys.readouterr().out
