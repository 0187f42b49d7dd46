"""A recipe turned into validated runs, once per invocation: the order in which its input is checked.

``load_recipe`` reads a TOML recipe, imports its plugins and resolves its algorithm; ``plan`` expands the grid and
checks every run before anything is trained or written: first what the config alone decides (types, choices and
ranges, declared on the config dataclasses; then each section's checks, kept beside what they protect in data/,
train/, augment/ and active/), then what needs the data (the dataset's files, the splits, the pool sizes, and
whether the model and algorithm build and support the setting). Only the grid's checks live here.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_bench.active.checks import check_acquisitions, check_active, check_label_pool
from ssl_bench.active.loop import schedule
from ssl_bench.algorithms import algorithm_config
from ssl_bench.augment.policies import check_policies
from ssl_bench.config import RecipeConfig, RunConfig
from ssl_bench.config_checks import check_fields, check_finite, check_ranges, check_value
from ssl_bench.data import load_data
from ssl_bench.data.checks import check_classes, check_data, check_unlabeled_pool
from ssl_bench.data.pairs import FOLDER_PREFIX
from ssl_bench.data.split_ids import DASplitId, SplitId, run_split_id
from ssl_bench.data.splits import get_run_split
from ssl_bench.errors import ConfigError
from ssl_bench.identity import NON_SEMANTIC, run_hash
from ssl_bench.plugins import beside, import_plugins, provenance
from ssl_bench.recipe_files import build_recipe, parse_override, read_recipe, read_toml
from ssl_bench.registry import ALGORITHMS, AUGMENTATIONS, DATASETS, MODELS
from ssl_bench.results.layout import manifest_dir
from ssl_bench.train import RunParts
from ssl_bench.train.checks import build_parts, check_train, check_world


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Read a TOML recipe, apply ``--set`` overrides, import its ``plugins``, and validate every key and name.

    A recipe file must name its algorithm and its data: an empty or partial file would otherwise train the
    defaults (WRN-28-2 for 2^20 steps), which is never what a user meant."""
    values = read_recipe(path, overrides)
    if "plugins" in values:  # a plugin file is named from the recipe's folder, wherever ssl-bench runs
        values["plugins"] = beside(values["plugins"], Path(path).parent)
    data = values["data"] if isinstance(values.get("data"), dict) else {}
    algorithm = values["algorithm"] if isinstance(values.get("algorithm"), dict) else {}
    missing = [k for k, ok in (("[algorithm] name", "name" in algorithm),
                               ("[data] dataset (or source and target)", "dataset" in data or "source" in data))
               if not ok]  # fmt: skip
    if missing:
        empty = "is empty" if not values else f"does not set {' or '.join(missing)}"
        raise ConfigError(
            f"recipe {path} {empty}: a recipe names its algorithm and data (it would otherwise train the defaults, "
            "WRN-28-2 for 2^20 steps); see recipes/smoke.toml"
        )
    recipe = recipe_from_dict(values)
    changed = changed_by(read_toml(path), overrides or [])
    if changed:  # the file's description no longer says what these runs are: say what changed
        recipe.description = f"{recipe.description} (changed by --set {' '.join(changed)})".lstrip()
    return recipe


def changed_by(values: dict[str, Any], overrides: list[str]) -> list[str]:
    """The ``--set`` overrides that change what a run computes from what the recipe file says, last one per key.

    Left out: keys that change where or how visibly a run executes (``NON_SEMANTIC``, e.g. what ``--device`` and
    ``--quiet`` set), the grid (the rows show budgets and seed counts), the recipe's own name and description, and
    a value equal to the file's."""
    out: dict[tuple[str, ...], str] = {}
    for text in overrides:
        path, value = parse_override(text)
        out.pop(tuple(path), None)  # the last override of a key is the one that counts
        if path[0] in ("grid", "name", "description") or path[-1] in NON_SEMANTIC.get(path[0], ()):
            continue
        node: Any = values
        for part in path:
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node != value:
            out[tuple(path)] = f"{'.'.join(path)}={text.split('=', 1)[1].strip()}"
    return list(out.values())


_ABSENT = object()


def recipe_from_dict(values: dict[str, Any]) -> RecipeConfig:
    """A recipe given as a dict (tests, programs) validated like a file's; its ``plugins`` are imported first."""
    import_plugins(check_value(values.get("plugins", []), list[str], "plugins"))
    return build_recipe(values, algorithm_config)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a recipe, validated: its config, identity, split and (active learning) its last round."""

    run: RunConfig
    config_hash: str
    split: str  # canonical split id
    last_round: int | None  # active learning: the run is done once this round is recorded; None otherwise

    @property
    def tag(self) -> str:
        return f"{self.run.algorithm.name} {self.split}"


# ----------------------------------------------------------------------------------------------------------
# checks the config alone decides

SECTIONS = ("data", "model", "augment", "train", "active")  # the built-in sections


def check_sections(recipe: RecipeConfig) -> None:
    """Every number of the recipe is finite and within float32's range, every value of a built-in section has its
    declared type and choice (``config_checks.check_fields``: a recipe built in Python skips ``from_dict``), and
    every number lies in the range its field declares, the algorithm's too (its types are checked as its config is
    built from a recipe, ``algorithm_config``: a plug-in's may use types that only its own code reads)."""
    for section in SECTIONS:
        check_fields(getattr(recipe, section), section)
    check_finite(recipe.algorithm, "algorithm")
    for section in SECTIONS:
        check_ranges(getattr(recipe, section), section)
    check_ranges(recipe.algorithm, "algorithm", getattr(recipe.algorithm, "name", ""))


def check_grid(recipe: RecipeConfig) -> None:
    """Each grid list has values, each once, and label budgets and seeds that a split can be drawn for."""
    grid = recipe.grid
    if not grid.n_labels or not grid.seeds:
        raise ConfigError("grid.n_labels and grid.seeds must each list at least one value")
    for f in dataclasses.fields(grid):
        values = getattr(grid, f.name)
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"grid.{f.name} lists {twice[0]} more than once: each value is one run per grid point")
    if recipe.data.setting == "ssl" and min(grid.n_labels) < 1:
        raise ConfigError(f"grid.n_labels: label budgets must be >= 1, got {min(grid.n_labels)}")
    if recipe.data.setting == "ssl" and grid.target_labels:
        raise ConfigError("grid.target_labels applies to settings uda and ssda, not ssl")
    for k in grid.target_labels:
        if k < 0:
            raise ConfigError(f"grid.target_labels: labels per class must be >= 0, got {k}")
    pools = grid.n_unlabeled or [recipe.data.n_unlabeled]
    if min(pools) < 0:
        raise ConfigError(f"data.n_unlabeled (grid.n_unlabeled) must be >= 0, got {min(pools)}")
    for seed in grid.seeds:
        if not 0 <= seed < 2**32:
            raise ConfigError(f"grid.seeds: seeds must lie in [0, 4294967295] (numpy's seed range), got {seed}")


def expand(recipe: RecipeConfig) -> list[RunConfig]:
    """One RunConfig per (label budget[, pool size], seed[, acquisition]) of the recipe's grid, budgets outermost,
    after every check the config alone decides.

    An active-learning recipe (non-empty ``active.acquisitions``) trains each run for its whole label-growth
    schedule: ``train.steps`` is derived from it. A domain-adaptation recipe (setting uda or ssda) varies the
    target labels per class instead of the label budget: each k of ``grid.target_labels`` is a uda run (k = 0) or
    an ssda run with k labels per class.
    """
    data = recipe.data
    check_sections(recipe)
    check_train(recipe.train)
    check_policies(recipe.augment)
    check_grid(recipe)
    check_acquisitions(recipe.active, data.setting, recipe.train.steps)
    if data.setting == "ssl":
        variants = [dataclasses.replace(data, n_labels=n) for n in recipe.grid.n_labels]
    else:
        ks = recipe.grid.target_labels or [data.target_labels]
        variants = [dataclasses.replace(data, setting="ssda" if k else "uda", target_labels=k, n_labels=0) for k in ks]
    for variant in variants:
        check_data(variant)
    runs = []
    pools = recipe.grid.n_unlabeled or [data.n_unlabeled]
    for variant, pool in itertools.product(variants, pools):
        for seed in recipe.grid.seeds:
            acquisitions: list[str | None] = [*recipe.active.acquisitions] or [None]
            for acquisition in acquisitions:
                train = recipe.train
                if acquisition is not None:
                    rounds = check_active(recipe.active, variant.n_labels, train.batch_size, train.eval_every)
                    train = dataclasses.replace(train, steps=rounds[-1][0])
                runs.append(
                    RunConfig(
                        seed=seed,
                        data=dataclasses.replace(variant, n_unlabeled=pool),
                        model=recipe.model,
                        augment=recipe.augment,
                        train=train,
                        algorithm=recipe.algorithm,
                        active=recipe.active,
                        acquisition=acquisition,
                        recipe={"name": recipe.name, "description": recipe.description},
                    )
                )
    return runs


def split_id(run: RunConfig) -> SplitId | DASplitId:
    return run_split_id(run.data, run.seed)


# ----------------------------------------------------------------------------------------------------------
# checks that need the data


def components(run: RunConfig, parts: RunParts) -> list[object]:
    """The registered objects a run is made of: algorithm, model, dataset loaders and augmentation policies."""
    data = run.data
    domains = [data.dataset] if data.setting == "ssl" else [data.source, data.target]
    datasets = ["folder" if d.startswith(FOLDER_PREFIX) else d for d in domains]
    policies = {"weak", *(getattr(run.augment, r) for r in parts.policies if r != "none")}
    return [
        ALGORITHMS.get(run.algorithm.name),
        *([] if run.model.name.startswith("timm:") else [MODELS.get(run.model.name)]),
        *(DATASETS.get(d) for d in datasets),
        *(AUGMENTATIONS.get(p) for p in sorted(policies)),
    ]


def plan(recipe: RecipeConfig, results_dir: Path, world: int = 1, at_once: int = 1) -> list[PlannedRun]:
    """Every run of ``recipe``, validated before anything is written: the config checks of ``expand`` first, then data
    present, splits drawable, pools large enough, and the run's parts buildable in its setting (and, for
    ``world`` > 1 processes, splittable; for ``at_once`` runs training together on this machine, fitting in its
    memory side by side). Each run carries the provenance of any plugin code it uses, which enters its config
    hash."""
    runs = expand(recipe)
    planned = []
    for i, run in enumerate(runs):
        ds = load_data(run.data)
        check_classes(run, ds.num_classes)
        split = get_run_split(ds, run.data, run.seed, manifest_dir(results_dir), write=False)
        if run.acquisition is not None:
            check_label_pool(run.active, len(ds.train_labels), split)
        check_unlabeled_pool(run.data, len(ds.train_labels), split)
        if i == 0:  # model, algorithm, augmentation and datasets are the same for every run of a recipe
            parts = build_parts(run, ds, split, min(at_once, len(runs)))
            unsupported = sorted({r.data.setting for r in runs} - set(parts.algorithm.settings))
            if unsupported:
                raise ConfigError(
                    f"algorithm {run.algorithm.name} does not support setting {unsupported[0]}; it runs in: "
                    f"{', '.join(parts.algorithm.settings)}"
                )
            plugins = provenance(components(run, parts))
        check_world(run, type(parts.algorithm), world)
        run = dataclasses.replace(run, plugins=plugins)
        last_round = None
        if run.acquisition is not None:
            last_round = len(schedule(run.active, run.data.n_labels, run.train.batch_size)) - 1
        planned.append(PlannedRun(run, run_hash(run), split.id, last_round))
    return planned
