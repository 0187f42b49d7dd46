import pytest

from ssl_bench.errors import ConfigError
from ssl_bench.registry import ALGORITHMS, DATASETS, Registry, did_you_mean


def test_register_get_and_names():
    reg: Registry = Registry("widget")
    reg.register("b")(2)
    reg.add("a", 1)
    assert reg.get("a") == 1 and reg.get("b") == 2
    assert reg.names() == ["a", "b"] and "a" in reg and len(reg) == 2


def test_duplicate_name_is_an_error():
    reg: Registry = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="duplicate widget name 'a'"):
        reg.add("a", 2)


@pytest.mark.parametrize("name", ["..", ".", "../evil", "a/b", "a\\b", "a\0b"])
def test_a_name_that_is_not_a_file_name_is_refused(name):
    """Algorithm and dataset names become folders of the results directory: refused when registered, before a
    plugin's run can train and only then fail to write its record."""
    reg: Registry = Registry("widget")
    with pytest.raises(ValueError, match="invalid widget name"):
        reg.add(name, 1)
    assert name not in reg
    reg.add("a.b-c_d:e", 1)  # dots, dashes and colons are fine


def test_unknown_name_lists_choices():
    reg: Registry = Registry("widget")
    reg.add("alpha", 1)
    reg.add("beta", 2)
    with pytest.raises(ConfigError) as exc:
        reg.get("gamma")
    assert str(exc.value) == "unknown widget 'gamma'; valid choices: alpha, beta"


def test_unknown_name_suggests_the_closest():
    reg: Registry = Registry("widget")
    for name in ("alpha", "beta", "betamax"):
        reg.add(name, 1)
    with pytest.raises(ConfigError) as exc:
        reg.get("bta")
    assert str(exc.value) == "unknown widget 'bta' (did you mean 'beta'?); valid choices: alpha, beta, betamax"


def test_did_you_mean():
    assert did_you_mean("step", ["lr", "steps", "seeds"]) == " (did you mean 'steps'?)"
    assert did_you_mean("step", ["lr", "steps"], "train.{}".format) == " (did you mean train.steps?)"
    assert did_you_mean("nosuch", ["lr", "steps"]) == ""  # nothing close: no guess
    assert did_you_mean("x", []) == ""


def test_builtin_registries_are_populated():
    import ssl_bench.algorithms  # noqa: F401
    import ssl_bench.data  # noqa: F401

    assert "supervised" in ALGORITHMS
    for name in ("digits", "cifar10", "cifar100", "svhn", "stl10", "mnist", "fashion_mnist", "usps", "folder"):
        assert name in DATASETS, name


def test_make_run_all_covers_every_registered_algorithm_and_each_has_a_digits_recipe():
    """`make run-all` lists the algorithms by hand: the list must be the registry's, and `make run` a part of it."""
    import re
    from pathlib import Path

    import ssl_bench.algorithms  # noqa: F401

    root = Path(__file__).resolve().parents[1]
    text = (root / "Makefile").read_text().replace("\\\n", " ")
    lists = {m[1]: m[2].split() for m in re.finditer(r"^(\w+) := (.*)$", text, re.M)}
    assert sorted(lists["ALL_DIGITS"]) == ALGORITHMS.names()
    assert set(lists["DIGITS"]) <= set(lists["ALL_DIGITS"]) and {"flexmatch", "freematch", "softmatch"} <= set(
        lists["DIGITS"]
    )
    for name in ALGORITHMS.names():
        assert (root / "recipes" / "digits" / f"{name}.toml").is_file(), name
