"""ssl_bench: a semi-supervised learning benchmark suite (MixMatch, ReMixMatch, FixMatch, AdaMatch, MMA).

The package's front door for programs and notebooks: load and run a recipe as ``ssl-bench run`` does, list and
build components, and the ``Algorithm`` API with its conformance checks. Every name below ``__all__`` is imported on
first use (PEP 562), so that ``import ssl_bench`` stays as cheap as the command line's start-up: torch, the data
loaders and the trainer load only when a program reaches for them. Bad input raises an ``SSLBenchError`` (the line
that ``ssl-bench`` prints as ``ssl-bench: error: ...``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and the API reference
    from torch import nn

    from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig, DataInfo, Ranks
    from ssl_bench.augment.views import Batch, ViewSpec
    from ssl_bench.config import RecipeConfig
    from ssl_bench.conformance import CHECKS, SLOW_CHECKS, run_checks
    from ssl_bench.data.images import ImageDataset
    from ssl_bench.errors import (
        CheckpointError,
        ConfigError,
        DataError,
        DivergenceError,
        ResultsDirError,
        RunMemoryError,
        SplitError,
        SSLBenchError,
        WriteError,
    )
    from ssl_bench.registry import ALGORITHMS, AUGMENTATIONS, DATASETS, MODELS

# name -> the module it lives in, imported the first time the name is read
_LAZY = {
    "Algorithm": "ssl_bench.algorithms.base",
    "AlgorithmConfig": "ssl_bench.algorithms.base",
    "DataInfo": "ssl_bench.algorithms.base",
    "Ranks": "ssl_bench.algorithms.base",
    "Batch": "ssl_bench.augment.views",
    "ViewSpec": "ssl_bench.augment.views",
    "RecipeConfig": "ssl_bench.config",
    "ImageDataset": "ssl_bench.data.images",
    "CHECKS": "ssl_bench.conformance",
    "SLOW_CHECKS": "ssl_bench.conformance",
    "run_checks": "ssl_bench.conformance",
    "ALGORITHMS": "ssl_bench.registry",
    "AUGMENTATIONS": "ssl_bench.registry",
    "DATASETS": "ssl_bench.registry",
    "MODELS": "ssl_bench.registry",
    **{
        name: "ssl_bench.errors"
        for name in (
            "SSLBenchError",
            "ConfigError",
            "DataError",
            "SplitError",
            "CheckpointError",
            "DivergenceError",
            "RunMemoryError",
            "ResultsDirError",
            "WriteError",
        )
    },
}

__all__ = [
    "__version__",
    # recipes and runs
    "load_recipe",
    "run_recipe",
    "RecipeConfig",
    # components
    "list_components",
    "get_algorithm",
    "create_algorithm",
    "load_dataset",
    "create_model",
    "ALGORITHMS",
    "DATASETS",
    "MODELS",
    "AUGMENTATIONS",
    "ImageDataset",
    # the algorithm API and its conformance checks
    "Algorithm",
    "AlgorithmConfig",
    "DataInfo",
    "Batch",
    "ViewSpec",
    "Ranks",
    "check_algorithm",
    "CHECKS",
    "SLOW_CHECKS",
    "run_checks",
    # the errors a caller catches
    "SSLBenchError",
    "ConfigError",
    "DataError",
    "SplitError",
    "CheckpointError",
    "DivergenceError",
    "RunMemoryError",
    "ResultsDirError",
    "WriteError",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ssl_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # the next read is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _load_components(plugins: Iterable[str] = ()) -> None:
    """The built-in components, then installed entry points, then ``plugins``: what ``--plugin`` does."""
    import argparse

    from ssl_bench.cli.args import load_plugins

    load_plugins(argparse.Namespace(plugin=list(plugins)))


def load_recipe(path: str | Path, overrides: Sequence[str] = (), plugins: Iterable[str] = ()) -> RecipeConfig:
    """Read and validate the TOML recipe at ``path`` with ``--set``-style ``overrides`` (``["train.steps=200"]``),
    after importing ``plugins`` (module names, as ``--plugin``). Raises ``ConfigError`` in one line on bad input."""
    from ssl_bench.plan import load_recipe as load

    _load_components(plugins)
    return load(Path(path), list(overrides))


def run_recipe(
    path: str | Path,
    overrides: Sequence[str] = (),
    results_dir: str | Path = "leaderboard",
    plugins: Iterable[str] = (),
    leaderboard: bool = True,
) -> list[dict[str, Any]]:
    """Run every label budget x seed of the recipe at ``path``, as ``ssl-bench run PATH --set ... --results-dir
    RESULTS_DIR`` does with one worker: validate every run first, skip the recorded ones, resume interrupted ones,
    train the rest one after another in this process and write a record for each; then regenerate the leaderboard
    of ``results_dir`` (unless ``leaderboard=False``).

    Returns the records of the recipe's runs, as read back from ``results_dir``: the runs trained now and those
    recorded before. ``--device`` and ``--quiet`` are the overrides ``train.device=...`` and
    ``train.progress=false``. A run that diverges raises ``DivergenceError`` after the others have run."""
    from ssl_bench.leaderboard import write_leaderboard
    from ssl_bench.plan import plan
    from ssl_bench.results.layout import RUNS_DIR, check_results_dir
    from ssl_bench.results.store import load_records
    from ssl_bench.runner import run_planned

    results = Path(results_dir)
    check_results_dir(results)
    recipe = load_recipe(path, overrides, plugins)
    planned = plan(recipe, results)
    try:
        run_planned(planned, results)
    finally:
        if leaderboard and any((results / RUNS_DIR).rglob("*.json")):
            write_leaderboard(results)
    wanted = {p.config_hash for p in planned}
    return [r for r in load_records(results) if r["config_hash"] in wanted]


def list_components(plugins: Iterable[str] = ()) -> dict[str, list[str]]:
    """The registered names of each kind, as ``ssl-bench list`` prints them: ``algorithms``, ``datasets``,
    ``pairs`` (domain pairs), ``models`` and ``augmentations`` (after importing ``plugins``)."""
    from ssl_bench.data.pairs import pair_choices
    from ssl_bench.models import model_names
    from ssl_bench.registry import ALGORITHMS, AUGMENTATIONS, DATASETS

    _load_components(plugins)
    return {
        "algorithms": ALGORITHMS.names(),
        "datasets": DATASETS.names(),
        "pairs": pair_choices().split(", "),
        "models": model_names(),
        "augmentations": AUGMENTATIONS.names(),
    }


def get_algorithm(name: str) -> type[Algorithm]:
    """The ``Algorithm`` subclass registered as ``name`` (built-in, or from a loaded plugin)."""
    from ssl_bench.algorithms import get_algorithm as get

    return get(name)


def create_algorithm(name: str, model: nn.Module, num_classes: int, data: DataInfo | None = None, **hyper: Any):
    """The algorithm ``name`` around ``model``, its config built from its defaults and ``hyper`` (e.g.
    ``threshold=0.9``) and checked as a recipe's ``[algorithm]`` table is; ``data`` describes the training sets."""
    from ssl_bench.algorithms import algorithm_config

    cfg = algorithm_config({"name": name, **hyper})
    return get_algorithm(name)(model, cfg, num_classes, data)


def load_dataset(name: str, **data: Any) -> ImageDataset:
    """The dataset ``name`` (``ssl-bench list datasets``) as uint8 images and labels, with the other ``[data]`` keys
    given as keywords (e.g. ``root=...``, ``download=True``, ``image_size=16``)."""
    from ssl_bench.config import DataConfig
    from ssl_bench.config_checks import check_ranges, from_dict
    from ssl_bench.data import load_data

    cfg = from_dict(DataConfig, {"dataset": name, **data}, "data")
    check_ranges(cfg, "data")
    return load_data(cfg)


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **model: Any) -> nn.Module:
    """The backbone ``name`` (``wrn28``, ``small_cnn``, ``timm:<name>``) for ``num_classes`` classes and images of
    ``in_channels`` x ``image_size`` x ``image_size``, with the other ``[model]`` keys as keywords (``width=2``)."""
    from ssl_bench.config import ModelConfig
    from ssl_bench.config_checks import check_ranges, from_dict
    from ssl_bench.models import create_model as create

    cfg = from_dict(ModelConfig, {"name": name, **model}, "model")
    check_ranges(cfg, "model")
    return create(cfg, num_classes, in_channels, image_size)


def check_algorithm(name: str, slow: bool = False, plugins: Iterable[str] = ()) -> dict[str, str | None]:
    """The conformance checks of ``ssl-bench check NAME [--slow]``: each check's name -> None if it passed, else why
    it failed."""
    from ssl_bench.conformance import CHECKS, SLOW_CHECKS, run_checks

    _load_components(plugins)
    checks = CHECKS + (SLOW_CHECKS if slow else [])
    return {check.__name__: error for check, error in run_checks(name, checks)}
