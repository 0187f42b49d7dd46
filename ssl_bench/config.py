"""Dataclass configs: the sections of a recipe and of a run, each key's type, choice and range declared beside it
(read by ``config_checks``; recipe files become these in ``recipe_files``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from ssl_bench.config_checks import EITHER, ONE_OF_GOT, Range, choice


@dataclass
class GridConfig:
    """The grid a recipe expands into runs: every label budget x every seed."""

    n_labels: list[int] = field(default_factory=lambda: [40])
    seeds: list[int] = field(default_factory=lambda: [1])
    n_unlabeled: list[int] = field(default_factory=list)  # optional: also vary the unlabeled pool (data.n_unlabeled)
    target_labels: list[int] = field(default_factory=list)  # uda/ssda: target labels per class; 0 = uda, k = ssda-k


@dataclass
class DataConfig:
    """Which dataset, where its files are, and how the split is drawn (docs/reference/common.md#label-splits)."""

    dataset: str = "digits"
    root: str = "~/.cache/ssl_bench/data"  # torchvision-backed and folder datasets read files here; digits caches
    download: bool = False  # fetch missing files (needs a network); off so runs never download silently
    image_size: int = 0  # resize every image to this side once at load time (bilinear); 0 = native size
    extra: bool = False  # svhn: add the 531,131 'extra' images to the training pool
    n_labels: int = 40  # label budget; set per run from grid.n_labels
    n_valid: Annotated[int, Range("[0, inf)")] = 0  # validation images carved from the pool (the papers' runs use 1)
    # proportional: SVHN's reference folds follow class frequency
    class_balance: Literal["balanced", "proportional"] = choice("balanced", EITHER)
    n_unlabeled: int = 0  # keep a seeded random subset of this many unlabeled images; 0 = all (exchange-rate runs)
    # FixMatch/ReMixMatch/AdaMatch: yes; MixMatch/MMA: no (docs/reference/porting.md#first-wave-checklist item 6)
    unlabeled_includes_labeled: bool = True
    # ssl: one dataset; uda / ssda: labeled source -> unlabeled target (reference docs/algorithms/adamatch.md)
    setting: Literal["ssl", "uda", "ssda"] = choice("ssl", "{where}: unknown setting {value!r}; valid: {choices}")
    source: str = ""  # uda/ssda: source domain, e.g. digits, mnist, folder:clipart (see `ssl-bench list pairs`)
    target: str = ""  # uda/ssda: target domain; accuracy is measured on its test set
    target_labels: int = 0  # ssda: labeled target images per class (uda: 0); set per run from grid.target_labels
    channels: int = 0  # uda/ssda: channels both domains are brought to; 0 = 3 if either domain has colour, else 1


@dataclass
class ModelConfig:
    """Backbone choice: ``wrn28`` (docs/reference/common.md#wrn-28-k), ``small_cnn``, or ``timm:<name>`` for any timm
    model."""

    name: str = "wrn28"
    # WRN-28-k widen factor k (first stage has 16k channels); small_cnn base channels / 16
    width: Annotated[int, Range("[1, inf)")] = 2
    # WRN stages; 0 = ceil(log2(image side)) - 2 as in the reference (3 at 32 px)
    scales: Annotated[int, Range("[0, inf)", "0 = from the image size")] = 0
    conv_bias: bool = False  # the TF reference has conv biases (1,469,642 params at k=2); typical ports do not
    # PyTorch convention for TF's decay 0.999 (docs/reference/common.md#wrn-28-k)
    bn_momentum: Annotated[float, Range("(0, 1]", "PyTorch's convention")] = 0.001
    # TF default (docs/reference/common.md#wrn-28-k); objax uses 1e-6
    bn_eps: Annotated[float, Range("(0, inf)")] = 0.001
    leaky_slope: Annotated[float, Range("[0, inf)")] = 0.1  # docs/reference/common.md#wrn-28-k


# augment.flip: whether the weak policy flips horizontally (p = 0.5). "dataset": where the dataset says a flip keeps
# the label (CIFAR, STL-10; never digits, SVHN, MNIST, folder); "always": every dataset, as AdaMatch's sm
# (docs/reference/common.md#weak-augmentation);
# "never". Recipes written when the key was a bool keep working: true = "dataset", false = "never".
Flip = Literal["dataset", "always", "never"]
FLIP_CHOICES = get_args(Flip)
FLIP_ALIASES = {True: "dataset", False: "never"}


@dataclass
class AugmentConfig:
    """Which augmentation policy serves each view role an algorithm asks for.

    Every magnitude is checked whichever policies the recipe uses: switching policy never starts from an invalid
    value."""

    weak: str = "weak"
    strong: str = "randaugment"
    flip: Flip = choice("dataset", aliases=FLIP_ALIASES)  # see above
    # reflect-pad translation as a fraction of the side (docs/reference/common.md#weak-augmentation)
    translate: Annotated[float, Range("[0, 1)", "a fraction of the image side")] = 0.125
    # RandAugment's cutout side as a fraction of the image side: 16 px at 32 px
    # (docs/reference/augmentation.md#randaugment-fixmatch)
    cutout: Annotated[float, Range("[0, 1]")] = 0.5
    # RandAugment: ops per image, drawn with replacement (docs/reference/augmentation.md#randaugment-fixmatch)
    ra_ops: Annotated[int, Range("[1, inf)")] = 2
    ra_prob: Annotated[float, Range("[0, 1]")] = 0.5  # RandAugment: probability that each drawn op is applied
    # CTAugment flags of every reference run: depth 2, threshold 0.8, decay 0.99
    # (docs/reference/augmentation.md#ctaugment)
    cta_depth: Annotated[int, Range("[1, inf)")] = 2
    cta_threshold: Annotated[float, Range("[0, 1]")] = 0.8
    cta_decay: Annotated[float, Range("(0, 1)")] = 0.99
    # fixmatch: bin sampling (also AdaMatch); remixmatch: segment sampling (docs/reference/augmentation.md#ctaugment)
    cta_sampling: Literal["fixmatch", "remixmatch"] = choice("fixmatch", EITHER)
    cta_cutout: bool = True  # append cutout(v=1) to every CTAugment policy: FixMatch/AdaMatch yes, ReMixMatch no
    # pixels: the code's <= 0.3 px (near no-op); fraction: the papers' ±30 % (docs/reference/augmentation.md#ctaugment)
    cta_translate: Literal["pixels", "fraction"] = choice("pixels", EITHER)
    # fraction: crop 0.25v of the side (fixmatch code); pixels: 0.25v px (remixmatch code)
    cta_rescale: Literal["pixels", "fraction"] = choice("fraction", EITHER)


@dataclass
class TrainConfig:
    """The training loop: optimizer, schedule, EMA, evaluation cadence, checkpoints (reference
    docs/reference/common.md#training-loop-units, docs/reference/common.md#optimisers-and-weight-decay to
    docs/reference/common.md#reporting-protocol)."""

    # optimizer steps; 2^20 in the papers (docs/reference/common.md#training-loop-units)
    steps: Annotated[int, Range("[1, inf)")] = 1 << 20
    # labeled images per step (docs/reference/common.md#training-loop-units)
    batch_size: Annotated[int, Range("[1, inf)")] = 64
    # sgd: Nesterov + L2 on weights (fixmatch repo); adam: Adam + decoupled decay x lr (Gen-1)
    optimizer: Literal["adam", "sgd"] = choice("sgd", "{where}: unknown optimizer {value!r}; valid: {choices}")
    lr: Annotated[float, Range("(0, inf)")] = 0.03  # fixmatch repo flag default
    momentum: Annotated[float, Range("[0, 1)")] = 0.9
    nesterov: bool = True
    # on conv/linear weights only, never biases or BN (docs/reference/common.md#optimisers-and-weight-decay)
    weight_decay: Annotated[float, Range("[0, inf)")] = 5e-4
    # weights: conv/linear weights only (docs/reference/common.md#optimisers-and-weight-decay); all: every trainable
    # variable, BN and biases too (google-research/uda
    # image/utils.py decay_weights, docs/algorithms/uda.md#hyper-parameters)
    decay_scope: Literal["weights", "all"] = "weights"
    # cosine: lr*cos(7*pi*k/(16*K)) (docs/reference/common.md#optimisers-and-weight-decay); cosine_quarter: AdaMatch's;
    # constant
    lr_schedule: Literal["constant", "cosine", "cosine_quarter"] = choice(
        "cosine", "{where}: unknown schedule {value!r}; valid: {choices}"
    )
    ema_decay: Annotated[float, Range("[0, 1)")] = 0.999  # docs/reference/common.md#ema-model
    # copy: BN statistics copied from the live model (TF); average: objax (AdaMatch)
    ema_buffers: Literal["copy", "average"] = choice("copy", ONE_OF_GOT)
    ema_warmup: bool = False  # decay min(ema_decay, (1+k)/(10+k)); a deviation that helps runs of a few 1,000 steps
    # steps between evaluations (64 kimg at B=64, docs/reference/common.md#training-loop-units)
    eval_every: Annotated[int, Range("[1, inf)")] = 1024
    # headline = median of the last k evaluations (docs/reference/common.md#reporting-protocol)
    median_k: Annotated[int, Range("[1, inf)")] = 20
    eval_batch_size: Annotated[int, Range("[1, inf)")] = 1024
    # steps between checkpoints; 0 = at every evaluation
    checkpoint_every: Annotated[int, Range("[0, inf)", "0 = at every evaluation")] = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    tensorboard: bool = False  # write scalars under <results-dir>/tensorboard/
    progress: bool = True  # progress bar on stderr
    # speed switches (train/switches.py); auto = the choice measured for the device (docs/training-and-speed.md#speed)
    # auto (fp32 on every device so far) | fp32 | bf16 (autocast) | fp16 (+ loss scaling, CUDA)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = choice("auto", ONE_OF_GOT)
    # auto (channels_last on CPU, contiguous on CUDA) | contiguous | channels_last
    memory_format: Literal["auto", "contiguous", "channels_last"] = choice("auto", ONE_OF_GOT)
    compile: Literal["none", "model"] = choice("none", ONE_OF_GOT)  # model: torch.compile of backbone and EMA copy
    # auto | default | keep: glibc keeps freed memory for reuse (no number changes)
    cpu_malloc: Literal["auto", "default", "keep"] = choice("auto", ONE_OF_GOT)
    threads: Annotated[int, Range("[0, 1024]", "0 = torch's default")] = 0  # CPU intra-op threads
    sync_bn: bool = False  # torchrun runs: BatchNorm statistics over the global batch instead of each rank's slice
    # divergence (train/divergence.py): a non-finite loss, or accuracy at chance for the last chance_evals
    # evaluations past chance_warmup x steps, stops the run with an error and no record
    divergence: bool = True
    chance_evals: Annotated[int, Range("[1, inf)")] = 5
    # fraction of train.steps before the chance-level check starts
    chance_warmup: Annotated[float, Range("[0, 1)", "a fraction of train.steps")] = 0.25
    # accuracy <= 1/classes + this counts as chance level
    chance_margin: Annotated[float, Range("[0, 1)")] = 0.02


@dataclass
class ActiveConfig:
    """Active learning (MMA, docs/algorithms/mma.md): grow the labeled set in rounds chosen by acquisition.

    The start budget is each of grid.n_labels; train.steps is derived from the schedule. The paper's CIFAR-10
    schedule (docs/algorithms/mma.md#schedule): start 250, grow 50, final 4000, first_interval 262,144 steps, interval
    2,048 kimg.
    """

    acquisitions: list[str] = field(default_factory=list)  # empty: no active learning; e.g. ["random", "diff2-direct"]
    grow: Annotated[int, Range("[1, inf)")] = 50  # labels added per round
    final: Annotated[int, Range("[1, inf)")] = 4000  # labels after the last round
    # training between acquisitions (2,048 kimg at B=64), in interval_unit
    interval: Annotated[int, Range("[1, inf)")] = 32768
    # training on the start budget before the first acquisition; 0 = interval
    first_interval: Annotated[int, Range("[0, inf)", "0 = active.interval")] = 0
    # steps | images (labeled images seen, the reference's kimg x 1024)
    interval_unit: Literal["steps", "images"] = choice("steps", EITHER)
    # .aug acquisitions average predictions over this many weak augmentations (docs/algorithms/mma.md#acquisition)
    aug_k: Annotated[int, Range("[1, inf)")] = 2


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
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else cfg
