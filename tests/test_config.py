from pathlib import Path

import pytest

from ssl_bench.config import (
    AugmentConfig,
    DataConfig,
    TrainConfig,
    apply_overrides,
    parse_override,
    to_dict,
)
from ssl_bench.errors import ConfigError
from ssl_bench.plan import load_recipe, recipe_from_dict
from ssl_bench.values import from_dict

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


def test_a_literal_field_is_a_choice():
    assert from_dict(TrainConfig, {"decay_scope": "all"}, "train").decay_scope == "all"
    with pytest.raises(ConfigError, match=r"^train\.decay_scope must be one of weights, all; got 'everything'$"):
        from_dict(TrainConfig, {"decay_scope": "everything"}, "train")
    with pytest.raises(ConfigError, match=r"train\.decay_scope must be one of weights, all; got 1"):
        from_dict(TrainConfig, {"decay_scope": 1}, "train")


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


def test_missing_and_invalid_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match=f"recipe {tmp_path} is a directory, not a TOML file"):
        load_recipe(tmp_path)
    with pytest.raises(ConfigError, match="recipe /dev/null is not a regular file"):  # it said "not found"
        load_recipe("/dev/null")
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


def test_flip_is_a_choice_with_the_old_booleans_as_aliases():
    assert from_dict(AugmentConfig, {}, "augment").flip == "dataset"
    for value in ("dataset", "always", "never"):
        assert from_dict(AugmentConfig, {"flip": value}, "augment").flip == value
    assert from_dict(AugmentConfig, {"flip": True}, "augment").flip == "dataset"
    assert from_dict(AugmentConfig, {"flip": False}, "augment").flip == "never"
    base = {"grid": {"n_labels": [40], "seeds": [1]}, "algorithm": {"name": "supervised"}}
    assert recipe_from_dict(apply_overrides(base, ["augment.flip=always"])).augment.flip == "always"
    assert recipe_from_dict(apply_overrides(base, ["augment.flip=false"])).augment.flip == "never"
    with pytest.raises(ConfigError) as exc:
        from_dict(AugmentConfig, {"flip": "sometimes"}, "augment")
    msg = str(exc.value)
    assert "\n" not in msg and "augment.flip must be one of dataset, always, never" in msg and "'sometimes'" in msg
    with pytest.raises(ConfigError, match=r"^augment\.flip: expected str, got 1$"):
        from_dict(AugmentConfig, {"flip": 1}, "augment")
