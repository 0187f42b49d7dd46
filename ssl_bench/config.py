"""Dataclass configs, TOML recipes and type-checked dotted overrides (``--set section.key=value``)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ssl_bench.errors import ConfigError
from ssl_bench.values import from_dict


@dataclass
class GridConfig:
    """The grid a recipe expands into runs: every label budget x every seed."""

    n_labels: list[int] = field(default_factory=lambda: [40])
    seeds: list[int] = field(default_factory=lambda: [1])
    n_unlabeled: list[int] = field(default_factory=list)  # optional: also vary the unlabeled pool (data.n_unlabeled)
    target_labels: list[int] = field(default_factory=list)  # uda/ssda: target labels per class; 0 = uda, k = ssda-k


@dataclass
class DataConfig:
    """Which dataset, where its files are, and how the split is drawn (reference-algorithms.md §1.3)."""

    dataset: str = "digits"
    root: str = "~/.cache/ssl_bench/data"  # torchvision-backed and folder datasets read files here; digits caches
    download: bool = False  # fetch missing files (needs a network); off so runs never download silently
    image_size: int = 0  # resize every image to this side once at load time (bilinear); 0 = native size
    extra: bool = False  # svhn: add the 531,131 'extra' images to the training pool
    n_labels: int = 40  # label budget; set per run from grid.n_labels
    n_valid: int = 0  # validation images carved from the training pool (the papers' runs use 1)
    class_balance: str = "balanced"  # balanced | proportional (SVHN's reference folds follow class frequency)
    n_unlabeled: int = 0  # keep a seeded random subset of this many unlabeled images; 0 = all (exchange-rate runs)
    unlabeled_includes_labeled: bool = True  # FixMatch/ReMixMatch/AdaMatch: yes; MixMatch/MMA: no (§8 item 6)
    setting: str = "ssl"  # ssl: one dataset; uda / ssda: labeled source -> unlabeled target (reference §6)
    source: str = ""  # uda/ssda: source domain, e.g. digits, mnist, folder:clipart (see `ssl-bench list pairs`)
    target: str = ""  # uda/ssda: target domain; accuracy is measured on its test set
    target_labels: int = 0  # ssda: labeled target images per class (uda: 0); set per run from grid.target_labels
    channels: int = 0  # uda/ssda: channels both domains are brought to; 0 = 3 if either domain has colour, else 1

    limits: ClassVar[dict[str, str]] = {"n_valid": "[0, inf)"}  # see check_limits


@dataclass
class ModelConfig:
    """Backbone choice: ``wrn28`` (§1.5), ``small_cnn``, or ``timm:<name>`` for any timm model."""

    name: str = "wrn28"
    width: int = 2  # WRN-28-k widen factor k (first stage has 16k channels); small_cnn base channels / 16
    scales: int = 0  # WRN stages; 0 = ceil(log2(image side)) - 2 as in the reference (3 at 32 px)
    conv_bias: bool = False  # the TF reference has conv biases (1,469,642 params at k=2); typical ports do not
    bn_momentum: float = 0.001  # PyTorch convention for TF's decay 0.999 (§1.5)
    bn_eps: float = 0.001  # TF default (§1.5); objax uses 1e-6
    leaky_slope: float = 0.1  # §1.5

    limits: ClassVar[dict[str, str]] = {
        "width": "[1, inf)",
        "scales": "[0, inf) 0 = from the image size",
        "bn_momentum": "(0, 1] PyTorch's convention",
        "bn_eps": "(0, inf)",
        "leaky_slope": "[0, inf)",
    }


# augment.flip: whether the weak policy flips horizontally (p = 0.5). "dataset": where the dataset says a flip keeps
# the label (CIFAR, STL-10; never digits, SVHN, MNIST, folder); "always": every dataset, as AdaMatch's sm (§1.4);
# "never". Recipes written when the key was a bool keep working: true = "dataset", false = "never".
FLIP_CHOICES = ("dataset", "always", "never")
FLIP_ALIASES = {True: "dataset", False: "never"}


@dataclass
class AugmentConfig:
    """Which augmentation policy serves each view role an algorithm asks for."""

    weak: str = "weak"
    strong: str = "randaugment"
    flip: str = field(default="dataset", metadata={"choices": FLIP_CHOICES, "aliases": FLIP_ALIASES})  # see above
    translate: float = 0.125  # reflect-pad translation as a fraction of the side (§1.4)
    cutout: float = 0.5  # RandAugment's cutout side as a fraction of the image side: 16 px at 32 px (§2.1)
    ra_ops: int = 2  # RandAugment: ops per image, drawn with replacement (§2.1)
    ra_prob: float = 0.5  # RandAugment: probability that each drawn op is applied (§2.1)
    cta_depth: int = 2  # CTAugment flags of every reference run: depth 2, threshold 0.8, decay 0.99 (§2.2)
    cta_threshold: float = 0.8
    cta_decay: float = 0.99
    cta_sampling: str = "fixmatch"  # fixmatch (bin sampling; also AdaMatch) | remixmatch (segment sampling) (§2.2)
    cta_cutout: bool = True  # append cutout(v=1) to every CTAugment policy: FixMatch/AdaMatch yes, ReMixMatch no
    cta_translate: str = "pixels"  # pixels: the code's <= 0.3 px (near no-op); fraction: the papers' ±30 % (§2.2)
    cta_rescale: str = "fraction"  # fraction: crop 0.25v of the side (fixmatch code); pixels: 0.25v px (remixmatch)

    # every magnitude, whichever policies the recipe uses: switching policy never starts from an invalid value
    limits: ClassVar[dict[str, str]] = {
        "translate": "[0, 1) a fraction of the image side",
        "cutout": "[0, 1]",
        "ra_ops": "[1, inf)",
        "ra_prob": "[0, 1]",
        "cta_depth": "[1, inf)",
        "cta_threshold": "[0, 1]",
        "cta_decay": "(0, 1)",
    }


@dataclass
class TrainConfig:
    """The training loop: optimizer, schedule, EMA, evaluation cadence, checkpoints (reference §1.1, §1.6-§1.8)."""

    steps: int = 1 << 20  # optimizer steps; 2^20 in the papers (§1.1)
    batch_size: int = 64  # labeled images per step (§1.1)
    optimizer: str = "sgd"  # sgd: Nesterov + L2 on weights (fixmatch repo); adam: Adam + decoupled decay x lr (Gen-1)
    lr: float = 0.03  # fixmatch repo flag default
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # on conv/linear weights only, never biases or BN (§1.6)
    # weights: conv/linear weights only (§1.6); all: every trainable variable, BN and biases too (google-research/uda
    # image/utils.py decay_weights, reference-algorithms-2.md §5.3)
    decay_scope: Literal["weights", "all"] = "weights"
    lr_schedule: str = "cosine"  # cosine: lr*cos(7*pi*k/(16*K)) (§1.6); cosine_quarter: AdaMatch's; constant
    ema_decay: float = 0.999  # §1.7
    ema_buffers: str = "copy"  # copy: BN statistics copied from the live model (TF); average: objax (AdaMatch)
    ema_warmup: bool = False  # decay min(ema_decay, (1+k)/(10+k)); a deviation that helps runs of a few 1,000 steps
    eval_every: int = 1024  # steps between evaluations (64 kimg at B=64, §1.1)
    median_k: int = 20  # headline = median of the last k evaluations (§1.8)
    eval_batch_size: int = 1024
    checkpoint_every: int = 0  # steps between checkpoints; 0 = at every evaluation
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    tensorboard: bool = False  # write scalars under <results-dir>/tensorboard/
    progress: bool = True  # progress bar on stderr
    # speed switches (train/switches.py); auto = the choice measured for the device (README, "Speed")
    precision: str = "auto"  # auto (fp32 on every device so far) | fp32 | bf16 (autocast) | fp16 (+ loss scaling, CUDA)
    memory_format: str = "auto"  # auto (channels_last on CPU, contiguous on CUDA) | contiguous | channels_last
    compile: str = "none"  # none | model: torch.compile of the backbone and its EMA copy
    cpu_malloc: str = "auto"  # auto | default | keep: glibc keeps freed memory for reuse (no number changes)
    threads: int = 0  # CPU intra-op threads; 0 = torch's default
    sync_bn: bool = False  # torchrun runs: BatchNorm statistics over the global batch instead of each rank's slice
    # divergence (train/divergence.py): a non-finite loss, or accuracy at chance for the last chance_evals
    # evaluations past chance_warmup x steps, stops the run with an error and no record
    divergence: bool = True
    chance_evals: int = 5
    chance_warmup: float = 0.25  # fraction of train.steps before the chance-level check starts
    chance_margin: float = 0.02  # accuracy <= 1/classes + this counts as chance level

    limits: ClassVar[dict[str, str]] = {
        "steps": "[1, inf)",
        "batch_size": "[1, inf)",
        "lr": "(0, inf)",
        "momentum": "[0, 1)",
        "weight_decay": "[0, inf)",
        "ema_decay": "[0, 1)",
        "eval_every": "[1, inf)",
        "median_k": "[1, inf)",
        "eval_batch_size": "[1, inf)",
        "checkpoint_every": "[0, inf) 0 = at every evaluation",
        "threads": "[0, 1024] 0 = torch's default",
        "chance_evals": "[1, inf)",
        "chance_warmup": "[0, 1) a fraction of train.steps",
        "chance_margin": "[0, 1)",
    }


@dataclass
class ActiveConfig:
    """Active learning (MMA, reference-algorithms.md §7): grow the labeled set in rounds chosen by acquisition.

    The start budget is each of grid.n_labels; train.steps is derived from the schedule. The paper's CIFAR-10
    schedule (§7.3): start 250, grow 50, final 4000, first_interval 262,144 steps, interval 2,048 kimg.
    """

    acquisitions: list[str] = field(default_factory=list)  # empty: no active learning; e.g. ["random", "diff2-direct"]
    grow: int = 50  # labels added per round
    final: int = 4000  # labels after the last round
    interval: int = 32768  # training between acquisitions (2,048 kimg at B=64), in interval_unit
    first_interval: int = 0  # training on the start budget before the first acquisition; 0 = interval
    interval_unit: str = "steps"  # steps | images (labeled images seen, the reference's kimg x 1024)
    aug_k: int = 2  # .aug acquisitions average predictions over this many weak augmentations (§7.4)

    limits: ClassVar[dict[str, str]] = {
        "grow": "[1, inf)",
        "final": "[1, inf)",
        "interval": "[1, inf)",
        "first_interval": "[0, inf) 0 = active.interval",
        "aug_k": "[1, inf)",
    }


@dataclass
class RecipeConfig:
    """A whole recipe: what to run (grid) and how every run of it is configured."""

    name: str = "unnamed"
    description: str = ""
    plugins: list[str] = field(default_factory=list)  # modules to import first, e.g. ["my_pkg.my_algo"] (plugins.py)
    grid: GridConfig = field(default_factory=GridConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)
    algorithm: Any = None  # the algorithm's own config dataclass (ssl_bench.algorithms.algorithm_config)


def pair_name(source: str, target: str) -> str:
    """``source-target``, the dataset name of a domain pair: dataset names never contain '-', so it splits back."""
    return f"{source}-{target}"


@dataclass
class RunConfig:
    """Everything that defines one run (one recipe entry at one label budget and seed)."""

    seed: int
    data: DataConfig
    model: ModelConfig
    augment: AugmentConfig
    train: TrainConfig
    algorithm: Any
    active: ActiveConfig = field(default_factory=ActiveConfig)
    acquisition: str | None = None  # the acquisition function of an active-learning run
    plugins: list[dict[str, str]] = field(default_factory=list)  # outside code the run uses: [{module, sha256}]
    # the recipe's name and description: shown beside the run's results, never part of its identity (hash)
    recipe: dict[str, str] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        """The dataset its records name: ``data.dataset``, or ``source-target`` in settings uda and ssda."""
        return self.data.dataset if self.data.setting == "ssl" else pair_name(self.data.source, self.data.target)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "seed": self.seed,
            "data": to_dict(self.data),
            "model": to_dict(self.model),
            "augment": to_dict(self.augment),
            "train": to_dict(self.train),
            "algorithm": to_dict(self.algorithm),
        }
        if self.acquisition is not None:  # only active-learning runs have this section
            out["active"] = {**to_dict(self.active), "acquisition": self.acquisition}
        if self.plugins:  # a plugin's source is part of the run's identity
            out["plugins"] = [dict(p) for p in self.plugins]
        return out


def to_dict(cfg: Any) -> Any:
    """Plain JSON-able dict of a config dataclass (recursively)."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg


# ----------------------------------------------------------------------------------------------------------
# recipes and overrides


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
        raise ConfigError(f"unknown section or key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
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
