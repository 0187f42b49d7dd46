"""Recipe files read into configs: TOML files, ``--set section.key=value`` overrides, and the validation of the
result into a ``RecipeConfig``.

Kept apart from the dataclasses (``config``), which say what a recipe may hold; this module is how it arrives.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_bench.config import RecipeConfig
from ssl_bench.config_checks import from_dict
from ssl_bench.errors import ConfigError
from ssl_bench.registry import did_you_mean


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.1"`` -> (["train", "lr"], 0.1). Values are TOML literals; a bare word is a string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); type checking happens when the dataclasses are built."""
    out = json.loads(json.dumps(values))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"recipe {p} is a directory, not a TOML file (e.g. {p}/*.toml for every recipe in it)")
    if p.exists() and not p.is_file():
        raise ConfigError(f"recipe {p} is not a regular file (a device, pipe or socket): give a TOML file")
    if not p.is_file():
        raise ConfigError(f"recipe file not found: {p}")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe {p} is not valid TOML: {exc}") from None


def build_recipe(values: dict[str, Any], algorithm_config: Callable[[dict[str, Any]], Any]) -> RecipeConfig:
    """Validate a recipe dict (after overrides) into a RecipeConfig; ``algorithm_config`` turns the [algorithm]
    table into that algorithm's config dataclass (``ssl_bench.algorithms.algorithm_config``)."""
    values = dict(values)
    algo = values.pop("algorithm", {"name": "supervised"})
    known = {f.name for f in dataclasses.fields(RecipeConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        hint = did_you_mean(unknown[0], known)
        raise ConfigError(f"unknown section or key {unknown[0]!r}{hint}; valid: {', '.join(sorted(known))}")
    recipe = from_dict(RecipeConfig, values, "")
    if recipe.data.setting in ("uda", "ssda") and "n_labels" in (values.get("grid") or {}):
        raise ConfigError(
            f"grid.n_labels does not apply to setting {recipe.data.setting}: the labels are all source labels plus "
            "grid.target_labels per target class"
        )
    recipe.algorithm = algorithm_config(algo)
    return recipe


def read_recipe(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """A TOML recipe as a dict with ``--set`` overrides applied (not yet validated)."""
    return apply_overrides(read_toml(path), overrides or [])
