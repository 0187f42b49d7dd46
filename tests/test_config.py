from pathlib import Path

import pytest

from ssl_bench.config import DataConfig, TrainConfig, apply_overrides, config_hash, from_dict, parse_override, to_dict
from ssl_bench.errors import ConfigError
from ssl_bench.plan import load_recipe, recipe_from_dict

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.toml"))


def test_parse_override_types():
    assert parse_override("train.lr=0.1") == (["train", "lr"], 0.1)
    assert parse_override("train.steps=100") == (["train", "steps"], 100)
    assert parse_override("data.dataset=cifar10") == (["data", "dataset"], "cifar10")
    assert parse_override('data.dataset="svhn"') == (["data", "dataset"], "svhn")
    assert parse_override("grid.seeds=[1, 2]") == (["grid", "seeds"], [1, 2])
    assert parse_override("train.nesterov=false") == (["train", "nesterov"], False)
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("train.lr")


def test_from_dict_checks_types_and_keys():
    assert from_dict(TrainConfig, {"lr": 1}, "train").lr == 1.0  # int widens to float
    with pytest.raises(ConfigError, match=r"train\.steps: expected int, got 'abc'"):
        from_dict(TrainConfig, {"steps": "abc"}, "train")
    with pytest.raises(ConfigError, match=r"train\.steps: expected int, got 1\.5"):
        from_dict(TrainConfig, {"steps": 1.5}, "train")
    with pytest.raises(ConfigError, match=r"train\.nesterov: expected bool, got 1"):
        from_dict(TrainConfig, {"nesterov": 1}, "train")
    with pytest.raises(ConfigError) as exc:
        from_dict(DataConfig, {"datset": "digits"}, "data")
    assert "unknown key data.datset" in str(exc.value) and "dataset" in str(exc.value)


def test_overrides_are_type_checked_through_the_recipe():
    base = {"grid": {"n_labels": [40], "seeds": [1]}, "algorithm": {"name": "supervised"}}
    recipe = recipe_from_dict(apply_overrides(base, ["train.steps=7", "grid.seeds=[4, 5]"]))
    assert recipe.train.steps == 7 and recipe.grid.seeds == [4, 5]
    with pytest.raises(ConfigError, match="grid.seeds"):
        recipe_from_dict(apply_overrides(base, ["grid.seeds=3"]))
    with pytest.raises(ConfigError, match="unknown section or key 'nosuch'"):
        recipe_from_dict(apply_overrides(base, ["nosuch.key=1"]))
    with pytest.raises(ConfigError, match=r"unknown algorithm 'nope'; valid choices: .*supervised"):
        recipe_from_dict(apply_overrides(base, ["algorithm.name=nope"]))
    with pytest.raises(ConfigError, match="unknown key algorithm.lr"):
        recipe_from_dict(apply_overrides(base, ["algorithm.lr=0.1"]))


def test_config_hash_is_stable_and_order_free():
    a = config_hash({"a": 1, "b": [1, 2]})
    assert a == config_hash({"b": [1, 2], "a": 1})
    assert a != config_hash({"a": 2, "b": [1, 2]})
    assert len(a) == 64


def test_missing_and_invalid_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("not toml [[[")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)


@pytest.mark.parametrize("path", RECIPES, ids=[p.relative_to(p.parents[1]).as_posix() for p in RECIPES])
def test_every_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.grid.n_labels and recipe.grid.seeds
    assert to_dict(recipe.train)["steps"] > 0
    import ssl_bench.data  # noqa: F401
    from ssl_bench.models import model_names
    from ssl_bench.registry import DATASETS

    assert recipe.data.dataset in DATASETS
    assert recipe.model.name in model_names() or recipe.model.name.startswith("timm:")


def test_paper_scale_recipe_matches_reference_protocol():
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes/cifar10/supervised.toml")
    assert recipe.model.name == "wrn28" and recipe.model.width == 2
    assert recipe.train.steps == 2**20 and recipe.train.median_k == 20 and recipe.train.eval_every == 1024
    assert recipe.grid.n_labels == [40, 250, 4000]
