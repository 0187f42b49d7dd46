"""The package's front door (``import ssl_bench``): every name it exports resolves, importing it loads nothing heavy,
and ``run_recipe`` runs a recipe as ``ssl-bench run`` does, returning the records it wrote."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import ssl_bench
from tests.conftest import ROOT

SMOKE = ROOT / "recipes/smoke.toml"


def test_every_exported_name_resolves():
    assert len(set(ssl_bench.__all__)) == len(ssl_bench.__all__)
    missing = [name for name in ssl_bench.__all__ if getattr(ssl_bench, name, None) is None]
    assert not missing
    # the names a user reaches for, by hand: a typo in the lazy table would leave one of these out
    for name in ("load_recipe", "run_recipe", "list_components", "Algorithm", "DataInfo", "ConfigError"):
        assert name in ssl_bench.__all__
    assert issubclass(ssl_bench.ConfigError, ssl_bench.SSLBenchError)
    assert ssl_bench.Algorithm.__module__ == "ssl_bench.algorithms.base"


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ssl_bench.nope  # noqa: B018
    from ssl_bench import results  # a submodule, not a name of the front door

    assert results.__name__ == "ssl_bench.results"


def test_importing_the_package_loads_neither_torch_nor_the_trainer():
    code = "import sys, ssl_bench; print('torch' in sys.modules, 'ssl_bench.train' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


def test_components_are_listed_and_built_by_name():
    names = ssl_bench.list_components()
    assert {"supervised", "fixmatch", "mixmatch"} <= set(names["algorithms"])
    assert "digits" in names["datasets"] and "small_cnn" in names["models"] and "weak" in names["augmentations"]
    model = ssl_bench.create_model("small_cnn", num_classes=10, in_channels=1, image_size=8, width=1)
    algo = ssl_bench.create_algorithm("fixmatch", model, 10, threshold=0.9)
    assert isinstance(algo, ssl_bench.Algorithm) and algo.cfg.threshold == 0.9
    assert ssl_bench.get_algorithm("fixmatch") is type(algo)
    with pytest.raises(ssl_bench.ConfigError, match="threshold"):
        ssl_bench.create_algorithm("fixmatch", model, 10, threshold=2.0)
    with pytest.raises(ssl_bench.ConfigError, match="unknown algorithm 'nope'"):
        ssl_bench.get_algorithm("nope")


def test_a_bad_override_is_a_config_error():
    with pytest.raises(ssl_bench.ConfigError, match="train.nope"):
        ssl_bench.load_recipe(SMOKE, ["train.nope=1"])


def test_run_recipe_runs_the_smoke_recipe_and_returns_its_record(tmp_path):
    results = tmp_path / "results"
    records = ssl_bench.run_recipe(SMOKE, ["train.steps=20", "train.eval_every=10", "train.median_k=2"], results)
    (record,) = records
    assert 0.0 <= record["acc_median"] <= 1.0 and record["steps"] == 20
    assert record["algorithm"] == "supervised" and record["dataset"] == "digits"
    (path,) = (results / "runs").rglob("*.json")
    assert json.loads(path.read_text()) == record
    assert (results / "README.md").is_file()  # the leaderboard, regenerated as after `ssl-bench run`
    # a second call trains nothing and returns the same record, read from disk
    assert ssl_bench.run_recipe(SMOKE, ["train.steps=20", "train.eval_every=10", "train.median_k=2"], results) == [
        record
    ]
