from pathlib import Path

import pytest

from ssl_bench.config import (
    AugmentConfig,
    DataConfig,
    TrainConfig,
    to_dict,
)
from ssl_bench.config_checks import from_dict
from ssl_bench.errors import ConfigError
from ssl_bench.plan import load_recipe, recipe_from_dict
from ssl_bench.recipe_files import apply_overrides, parse_override

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


def test_unknown_keys_and_sections_suggest_the_closest():
    with pytest.raises(
        ConfigError, match=r"^unknown key train\.step \(did you mean train\.steps\?\); valid keys in \[train\]: .*steps"
    ):
        from_dict(TrainConfig, {"step": 3}, "train")
    with pytest.raises(
        ConfigError, match=r"^unknown section or key 'trian' \(did you mean 'train'\?\); valid: .*train"
    ):
        recipe_from_dict({"trian": {"steps": 3}})
    with pytest.raises(
        ConfigError, match=r"^unknown key algorithm\.threshhold \(did you mean algorithm\.threshold\?\)"
    ):
        recipe_from_dict({"algorithm": {"name": "fixmatch", "threshhold": 0.9}})


def test_a_list_given_without_brackets_hints_at_them():
    base = {"grid": {"n_labels": [40], "seeds": [1]}, "algorithm": {"name": "supervised"}}
    hints = {
        "grid.seeds=1,2": "grid.seeds: expected list[int], got '1,2'; write a list in brackets: grid.seeds=[1,2]",
        "grid.seeds=3": "grid.seeds: expected list[int], got 3; write a list in brackets: grid.seeds=[3]",
        "grid.n_labels=40, 250": "write a list in brackets: grid.n_labels=[40,250]",
        "active.acquisitions=random,diff2-direct": 'active.acquisitions=["random","diff2-direct"]',
    }
    for override, hint in hints.items():
        with pytest.raises(ConfigError) as exc:
            recipe_from_dict(apply_overrides(base, [override]))
        assert hint in str(exc.value)
    with pytest.raises(ConfigError) as exc:  # a scalar where a scalar is expected gets no list hint
        recipe_from_dict(apply_overrides(base, ["train.steps=abc"]))
    assert "brackets" not in str(exc.value)


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
    with pytest.raises(ConfigError, match=r"^augment\.flip must be one of dataset, .* false \(= never\); got 1$"):
        from_dict(AugmentConfig, {"flip": 1}, "augment")


# ----------------------------------------------------------------------------------------------------------
# rules declared beside their fields (config_checks)


def test_field_range_and_choices_read_the_declarations():
    from ssl_bench.algorithms.fixmatch import FixMatchConfig
    from ssl_bench.config import ModelConfig
    from ssl_bench.config_checks import Range, field_choices, field_range

    assert str(field_range(TrainConfig, "lr")) == "(0, inf)"
    assert field_range(TrainConfig, "threads") == Range("[0, 1024]", "0 = torch's default")
    assert field_range(ModelConfig, "scales").note == "0 = from the image size"
    assert field_range(FixMatchConfig, "threshold") == Range("[0, 1]")
    assert field_range(TrainConfig, "device") is None and field_range(TrainConfig, "optimizer") is None
    assert field_choices(TrainConfig, "lr_schedule") == ("constant", "cosine", "cosine_quarter")
    assert field_choices(AugmentConfig, "flip") == ("dataset", "always", "never")
    assert field_choices(TrainConfig, "lr") is None and field_choices(TrainConfig, "device") is None


def test_range_requirement_reads_as_written():
    from ssl_bench.config_checks import Range

    assert Range("[1, inf)").requirement() == "be >= 1" and Range("(0, inf)").requirement() == "be > 0"
    assert Range("[0, 1)").requirement() == "lie in [0, 1)"
    r = Range("(0, 1]")
    assert [r.contains(v) for v in (0.0, 1e-9, 1.0, 1.0 + 1e-9)] == [False, True, True, False]


# every section key with a fixed set of values, and the message a bad value gets (kept from before the Literals)
CHOICE_ERRORS = {
    ("data", "class_balance"): "data.class_balance must be balanced or proportional, got 'x'",
    ("data", "setting"): "data.setting: unknown setting 'x'; valid: ssl, uda, ssda",
    ("augment", "flip"): "augment.flip must be one of dataset, always, never, true (= dataset), false (= never); "
    "got 'x'",
    ("augment", "cta_sampling"): "augment.cta_sampling must be fixmatch or remixmatch, got 'x'",
    ("augment", "cta_translate"): "augment.cta_translate must be pixels or fraction, got 'x'",
    ("augment", "cta_rescale"): "augment.cta_rescale must be pixels or fraction, got 'x'",
    ("train", "optimizer"): "train.optimizer: unknown optimizer 'x'; valid: adam, sgd",
    ("train", "decay_scope"): "train.decay_scope must be one of weights, all; got 'x'",
    ("train", "lr_schedule"): "train.lr_schedule: unknown schedule 'x'; valid: constant, cosine, cosine_quarter",
    ("train", "ema_buffers"): "train.ema_buffers must be one of copy, average, got 'x'",
    ("train", "precision"): "train.precision must be one of auto, fp32, bf16, fp16, got 'x'",
    ("train", "memory_format"): "train.memory_format must be one of auto, contiguous, channels_last, got 'x'",
    ("train", "compile"): "train.compile must be one of none, model, got 'x'",
    ("train", "cpu_malloc"): "train.cpu_malloc must be one of auto, default, keep, got 'x'",
    ("active", "interval_unit"): "active.interval_unit must be steps or images, got 'x'",
}


def test_every_choice_is_a_literal_refused_in_one_line_naming_its_values():
    import dataclasses

    from ssl_bench.config import ActiveConfig, ModelConfig
    from ssl_bench.config_checks import check_fields, field_choices

    classes = {"data": DataConfig, "model": ModelConfig, "augment": AugmentConfig, "train": TrainConfig,
               "active": ActiveConfig}  # fmt: skip
    found = {(s, f.name) for s, cls in classes.items() for f in dataclasses.fields(cls) if field_choices(cls, f.name)}
    assert found == set(CHOICE_ERRORS)
    for (section, key), message in CHOICE_ERRORS.items():
        with pytest.raises(ConfigError) as exc:  # as a recipe's value is read
            from_dict(classes[section], {key: "x"}, section)
        assert str(exc.value) == message
        with pytest.raises(ConfigError) as exc:  # and as a config built in Python is planned
            check_fields(classes[section](**{key: "x"}), section)
        assert str(exc.value) == message


def test_every_numeric_hyper_parameter_of_a_built_in_algorithm_declares_its_range():
    import dataclasses

    from ssl_bench.algorithms import ALGORITHMS, get_algorithm
    from ssl_bench.config_checks import field_range

    for name in ALGORITHMS.names():
        cls = get_algorithm(name).Config
        for f in dataclasses.fields(cls):
            value = getattr(cls(), f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert field_range(cls, f.name) is not None, f"{cls.__name__}.{f.name} declares no Range"


def test_a_plugin_config_type_that_config_checks_cannot_read_is_left_to_the_plugin():
    """A recipe built in Python has its built-in sections checked against their declarations, but an algorithm
    config's defaults of a type from_dict never reads (a tuple here) do not stop the plan."""
    import dataclasses

    from ssl_bench.algorithms import algorithm_config
    from ssl_bench.plan import check_sections

    base = {"grid": {"n_labels": [40], "seeds": [1]}, "algorithm": {"name": "supervised"}}
    recipe = recipe_from_dict(base)
    check_sections(recipe)
    recipe.algorithm = dataclasses.make_dataclass("TupleConfig", [("name", str), ("sizes", tuple)])("x", (1, 2))
    check_sections(recipe)
    recipe.train = dataclasses.replace(recipe.train, lr_schedule="warm")
    with pytest.raises(ConfigError, match=r"^train\.lr_schedule: unknown schedule 'warm'; valid: constant, cosine"):
        check_sections(recipe)
    recipe = recipe_from_dict(base)
    recipe.algorithm = dataclasses.replace(algorithm_config({"name": "fixmatch"}), threshold=2.0)
    with pytest.raises(ConfigError, match=r"^algorithm\.threshold of fixmatch must lie in \[0, 1\], got 2\.0$"):
        check_sections(recipe)  # a hyper-parameter set in Python meets its declared range too
