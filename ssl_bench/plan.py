"""A recipe turned into validated runs, once per invocation: the one place where input is checked.

``load_recipe`` reads a TOML recipe, imports its plugins and resolves its algorithm; ``plan`` expands the grid and
checks every run before anything is trained or written: first what the config alone decides (grid, setting,
schedule, optimizer, augmentation and component names), then what needs the data (the dataset's files, the splits,
the pool sizes, and whether the model and algorithm build and support the setting).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_bench.active.acquisition import Acquisition
from ssl_bench.active.loop import INTERVAL_UNITS, schedule
from ssl_bench.algorithms import algorithm_config
from ssl_bench.augment import create_policy
from ssl_bench.augment.strong import check_cta_choices
from ssl_bench.config import (
    ActiveConfig,
    AugmentConfig,
    DataConfig,
    RecipeConfig,
    RunConfig,
    TrainConfig,
    build_recipe,
    parse_override,
    read_recipe,
    read_toml,
)
from ssl_bench.data import load_data
from ssl_bench.data.pairs import FOLDER_PREFIX, SETTINGS, get_pair
from ssl_bench.data.split_ids import DASplitId, SplitId, run_split_id
from ssl_bench.data.splits import Split, check_budget, get_run_split
from ssl_bench.devices import available_memory, out_of_memory, resolve_device
from ssl_bench.errors import ConfigError, SSLBenchError
from ssl_bench.identity import NON_SEMANTIC, run_hash
from ssl_bench.models import parameter_bytes
from ssl_bench.plugins import import_plugins, provenance
from ssl_bench.registry import ALGORITHMS, AUGMENTATIONS, DATASETS, MODELS
from ssl_bench.results.layout import manifest_dir
from ssl_bench.train import RunParts, build_run
from ssl_bench.train.feed import data_info
from ssl_bench.train.optim import EMA_BUFFERS, LR_SCHEDULES, OPTIMIZERS
from ssl_bench.train.switches import COMPILES, CPU_MALLOCS, MEMORY_FORMATS, PRECISIONS
from ssl_bench.values import check_limits, check_value

# image sides data.image_size may resize to: below 8 px no augmentation or network here is meaningful, and above
# 512 px a dataset held in memory as float tensors stops fitting (CIFAR-10 at 512 px is ~150 GB)
MIN_SIDE, MAX_SIDE = 8, 512


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Read a TOML recipe, apply ``--set`` overrides, import its ``plugins``, and validate every key and name.

    A recipe file must name its algorithm and its data: an empty or partial file would otherwise train the
    defaults (WRN-28-2 for 2^20 steps), which is never what a user meant."""
    values = read_recipe(path, overrides)
    data = values.get("data") if isinstance(values.get("data"), dict) else {}
    algorithm = values.get("algorithm") if isinstance(values.get("algorithm"), dict) else {}
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


def check_train(tc: TrainConfig, augment: AugmentConfig) -> None:
    """[train] and [augment] beyond their ranges (``check_ranges``): names known, device available, policies
    buildable."""
    if tc.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer: unknown optimizer {tc.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if tc.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule: unknown schedule {tc.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    if tc.ema_buffers not in EMA_BUFFERS:
        raise ConfigError(f"train.ema_buffers must be one of {', '.join(EMA_BUFFERS)}, got {tc.ema_buffers!r}")
    if tc.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard needs the tensorboard package: pip install tensorboard")
    for key, choices in (
        ("precision", PRECISIONS),
        ("memory_format", MEMORY_FORMATS),
        ("compile", COMPILES),
        ("cpu_malloc", CPU_MALLOCS),
    ):
        if getattr(tc, key) not in choices:
            raise ConfigError(f"train.{key} must be one of {', '.join(choices)}, got {getattr(tc, key)!r}")
    device = resolve_device(tc.device)
    if tc.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision = fp16 needs a CUDA device (loss scaling), not {device}; use bf16 or fp32")
    for role in ("weak", "strong"):
        create_policy(getattr(augment, role), augment, hflip=True)
    # like the numeric [augment] limits, checked whichever policies the recipe uses
    check_cta_choices(augment.cta_sampling, augment.cta_translate, augment.cta_rescale)


def check_ranges(recipe: RecipeConfig) -> None:
    """Every number of the recipe is finite and lies in the interval its section declares (the ``limits`` of each
    section's config, ``values.check_limits``; the algorithm's own are checked as its config is built)."""
    check_finite(recipe)
    for section in ("data", "model", "augment", "train", "active"):
        check_limits(getattr(recipe, section), section)


FLOAT32_MAX = 3.4028234663852886e38  # the numbers of a recipe meet float32 tensors (lr and decay in the optimizer)


def check_finite(recipe: RecipeConfig) -> None:
    """No number of the recipe is nan, infinite (TOML allows both) or beyond float32's range, where torch's in-place
    updates fail on it ("value cannot be converted to type float without overflow")."""
    for section in ("data", "model", "augment", "train", "active", "algorithm"):
        part = getattr(recipe, section)
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{section}.{f.name} must be a finite number, got {value}")
            if isinstance(value, float) and abs(value) > FLOAT32_MAX:
                raise ConfigError(f"{section}.{f.name} must be within float32's range (±3.4e38), got {value:g}")


def check_data(cfg: DataConfig) -> None:
    """The [data] keys of a setting agree with each other (before any file is read)."""
    if cfg.image_size != 0 and not MIN_SIDE <= cfg.image_size <= MAX_SIDE:
        raise ConfigError(
            f"data.image_size must be 0 (native size) or between {MIN_SIDE} and {MAX_SIDE} pixels, got {cfg.image_size}"
        )
    if cfg.setting not in SETTINGS:
        raise ConfigError(f"data.setting: unknown setting {cfg.setting!r}; valid: {', '.join(SETTINGS)}")
    if cfg.setting == "ssl":
        for key, default in (("source", ""), ("target", ""), ("target_labels", 0), ("channels", 0)):
            if getattr(cfg, key) != default:
                raise ConfigError(f"data.{key} applies to settings uda and ssda; setting ssl uses data.dataset alone")
        return
    get_pair(cfg.source, cfg.target)  # both domains known, or a folder pair
    if cfg.setting == "uda" and cfg.target_labels != 0:
        raise ConfigError(f"setting uda uses no target labels, got data.target_labels = {cfg.target_labels}")
    if cfg.setting == "ssda" and cfg.target_labels < 1:
        raise ConfigError(f"setting ssda needs data.target_labels >= 1 per class, got {cfg.target_labels}")
    if cfg.n_valid:
        raise ConfigError(f"data.n_valid must be 0 in setting {cfg.setting} (no validation set is carved out)")
    if cfg.channels not in (0, 1, 3):
        raise ConfigError(f"data.channels must be 0 (automatic), 1 or 3, got {cfg.channels}")


def check_active(cfg: ActiveConfig, start: int, batch_size: int, eval_every: int) -> list[tuple[int, int]]:
    """The label-growth schedule from ``start`` labels, after checking that every round trains and is evaluated."""
    if start > cfg.final:
        raise ConfigError(f"the start budget {start} is above active.final = {cfg.final}")
    if cfg.interval_unit not in INTERVAL_UNITS:
        raise ConfigError(f"active.interval_unit must be steps or images, got {cfg.interval_unit!r}")
    rounds = schedule(cfg, start, batch_size)
    ends = [0] + [end for end, _ in rounds]
    if any(b <= a for a, b in itertools.pairwise(ends)):
        raise ConfigError("active.interval (and active.first_interval) must give at least one step per round")
    for a, b in itertools.pairwise(ends):  # evaluations fall on multiples of eval_every and on the last step
        if b // eval_every == a // eval_every and b != ends[-1]:
            raise ConfigError(
                "an active-learning round would end without an evaluation: make active.interval (and "
                f"active.first_interval) a multiple of train.eval_every = {eval_every}"
            )
    return rounds


def expand(recipe: RecipeConfig) -> list[RunConfig]:
    """One RunConfig per (label budget[, pool size], seed[, acquisition]) of the recipe's grid, budgets outermost,
    after every check the config alone decides.

    An active-learning recipe (non-empty ``active.acquisitions``) trains each run for its whole label-growth
    schedule: ``train.steps`` is derived from it. A domain-adaptation recipe (setting uda or ssda) varies the
    target labels per class instead of the label budget: each k of ``grid.target_labels`` is a uda run (k = 0) or
    an ssda run with k labels per class.
    """
    data = recipe.data
    check_ranges(recipe)
    check_train(recipe.train, recipe.augment)
    if not recipe.grid.n_labels or not recipe.grid.seeds:
        raise ConfigError("grid.n_labels and grid.seeds must each list at least one value")
    for f in dataclasses.fields(recipe.grid):
        values = getattr(recipe.grid, f.name)
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"grid.{f.name} lists {twice[0]} more than once: each value is one run per grid point")
    if data.setting == "ssl" and min(recipe.grid.n_labels) < 1:
        raise ConfigError(f"grid.n_labels: label budgets must be >= 1, got {min(recipe.grid.n_labels)}")
    for name in recipe.active.acquisitions:
        Acquisition.parse(name)
        if recipe.active.acquisitions.count(name) > 1:
            raise ConfigError(f"active.acquisitions lists {name!r} more than once: each is one run per seed")
    if data.setting == "ssl" or data.setting not in SETTINGS:
        check_data(data)
        if recipe.grid.target_labels:
            raise ConfigError("grid.target_labels applies to settings uda and ssda, not ssl")
        variants = [dataclasses.replace(data, n_labels=n) for n in recipe.grid.n_labels]
    else:
        if recipe.active.acquisitions:
            raise ConfigError(f"active learning is not available in setting {data.setting}; use setting ssl")
        ks = recipe.grid.target_labels or [data.target_labels]
        for k in ks:
            if k < 0:
                raise ConfigError(f"grid.target_labels: labels per class must be >= 0, got {k}")
        variants = [dataclasses.replace(data, setting="ssda" if k else "uda", target_labels=k, n_labels=0) for k in ks]
        for variant in variants:
            check_data(variant)
    runs = []
    pools = recipe.grid.n_unlabeled or [data.n_unlabeled]
    if min(pools) < 0:
        raise ConfigError(f"data.n_unlabeled (grid.n_unlabeled) must be >= 0, got {min(pools)}")
    if recipe.active.acquisitions and recipe.train.steps != TrainConfig.steps:
        raise ConfigError(
            "train.steps is derived from the active-learning schedule (active.first_interval, interval, grow and "
            f"final), so an active-learning recipe leaves it out; got train.steps = {recipe.train.steps}"
        )
    for variant, pool in itertools.product(variants, pools):
        for seed in recipe.grid.seeds:
            if not 0 <= seed < 2**32:
                raise ConfigError(f"grid.seeds: seeds must lie in [0, 4294967295] (numpy's seed range), got {seed}")
            for acquisition in recipe.active.acquisitions or [None]:
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


def check_classes(run: RunConfig, num_classes: int) -> None:
    """A classifier needs two classes, and a balanced split exactly n_labels / classes labels of each."""
    if num_classes < 2:
        raise ConfigError(f"dataset {run.dataset} has {num_classes} class(es); a classifier needs at least 2")
    if run.data.setting == "ssl":  # before any split is drawn or read
        check_budget(run.data.n_labels, num_classes, run.dataset, run.data.class_balance)


def check_pools(run: RunConfig, n_train: int, split: Split) -> None:
    """Pools large enough for ``data.n_unlabeled`` and for every round of an active-learning schedule."""
    available = len(split.pool(n_train, split.labeled, include_labeled=False))
    if run.acquisition is not None and run.active.final - len(split.labeled) > available:
        raise ConfigError(
            f"active.final = {run.active.final} needs {run.active.final - len(split.labeled)} more labels but only "
            f"{available} unlabeled images remain in the pool of {split.id}"
        )
    pool = len(split.pool(n_train, split.labeled, run.data.unlabeled_includes_labeled))
    if run.data.n_unlabeled > pool:
        raise ConfigError(f"data.n_unlabeled = {run.data.n_unlabeled} is more than the {pool} unlabeled images")


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


def check_world(run: RunConfig, algorithm: type, world: int) -> None:
    """A run split over ``world`` processes (torchrun) needs an algorithm whose step splits and a batch that does."""
    if world <= 1:
        return
    name = run.algorithm.name
    if not algorithm.data_parallel:
        raise ConfigError(f"{name} cannot train on {world} processes: {algorithm.not_split_because}; run it on one")
    if run.acquisition is not None:
        raise ConfigError(f"active learning ({run.acquisition}) runs on one process only, not on {world}")
    if run.train.batch_size % world:
        raise ConfigError(
            f"train.batch_size {run.train.batch_size} does not split over {world} processes: use a multiple of {world}"
        )


def check_model_memory(run: RunConfig, ds, at_once: int = 1) -> None:
    """Refuse, before allocating any of it, a model whose weights, gradients, EMA copy and optimizer state (four
    copies of its parameters, five with Adam), times the ``at_once`` runs training together on this machine
    (``--workers``), exceed the memory free on a CPU that trains it: such a run would otherwise be killed by the
    kernel's OOM killer part-way, with no message (a GPU's allocator raises instead, caught in build_parts and the
    trainer). Activations come on top."""
    device = resolve_device(run.train.device)
    free = available_memory(device)
    if free is None:
        return
    try:
        weights = parameter_bytes(run.model, ds.num_classes, ds.channels, ds.image_size)
    except SSLBenchError:
        raise
    except Exception:  # a model that cannot be built on the meta device is checked by building it (build_parts)
        return
    need = weights * (5 if run.train.optimizer == "adam" else 4)
    if need * at_once > free:
        runs = "" if at_once == 1 else f" for each of {at_once} runs at once"
        fewer = "" if at_once == 1 else "fewer --workers, "
        raise ConfigError(
            f"model {run.model.name} at width {run.model.width} does not fit in memory ({need / 2**30:,.1f} GiB for "
            f"its weights, gradients, EMA copy and optimizer state{runs}; {free / 2**30:,.1f} GiB free on {device}): "
            f"use {fewer}a smaller model.width or model"
        )


def build_parts(run: RunConfig, ds, split: Split, at_once: int = 1) -> RunParts:
    """The run's model, algorithm and augmentation, built once to check them (the algorithm sized for ``split``); a
    model too large for memory (for ``at_once`` runs together) is a one-line error naming its size, not the
    allocator's traceback or the OOM killer."""
    check_model_memory(run, ds, at_once)
    try:
        data = data_info(run, ds.train_labels, ds.num_classes, split, split.labeled)
        return build_run(run, ds, optimizer=False, data=data)
    except (RuntimeError, MemoryError) as exc:
        if not out_of_memory(exc):
            raise
        wanted = re.search(r"allocate (\d+) bytes", str(exc))
        size = f" ({int(wanted[1]) / 2**30:,.1f} GiB in one tensor)" if wanted else ""
        raise ConfigError(
            f"model {run.model.name} at width {run.model.width} does not fit in memory{size}: use a smaller "
            "model.width or model"
        ) from None


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
        check_pools(run, len(ds.train_labels), split)
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
