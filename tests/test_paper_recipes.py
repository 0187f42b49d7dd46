"""The paper-scale recipes under recipes/<dataset>/ load, name registered components and follow the reference protocol.

They are never trained here (2^20 steps need a GPU); these tests pin what they would run. The expected values are
written out per file in ``TABLE`` from docs/reference/common.md (docs/reference/common.md#training-loop-units to
docs/reference/common.md#reporting-protocol shared protocol, docs/reference/augmentation.md augmentations,
docs/algorithms/mixmatch.md#hyper-parameters MixMatch, docs/algorithms/remixmatch.md#hyper-parameters ReMixMatch,
docs/algorithms/fixmatch.md#hyper-parameters FixMatch, docs/algorithms/adamatch.md#hyper-parameters AdaMatch) and, for
the second wave, docs/reference/common.md (docs/reference/common.md#gen-2-baselines fixmatch-repo Gen-2 baselines,
docs/reference/common.md#torchssl-and-usb TorchSSL, docs/algorithms/pseudo_label.md to docs/algorithms/mean_teacher.md
Pseudo-Label / Π-Model / Mean Teacher, docs/algorithms/uda.md#hyper-parameters UDA,
docs/algorithms/flexmatch.md#hyper-parameters / docs/algorithms/freematch.md#hyper-parameters /
docs/algorithms/softmatch.md#hyper-parameters FlexMatch / FreeMatch / SoftMatch, docs/algorithms/dash.md#released-flags
Dash, docs/reference/published.md budgets), independently of the TOML files, so a recipe that drifts from the reference
fails here.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
from pathlib import Path

import pytest

import ssl_bench.data  # noqa: F401  (registers the datasets)
from ssl_bench.algorithms import get_algorithm
from ssl_bench.algorithms.base import DataInfo
from ssl_bench.augment.policies import check_policies
from ssl_bench.config import AugmentConfig, DataConfig, GridConfig, ModelConfig, RecipeConfig, TrainConfig
from ssl_bench.plan import expand, load_recipe
from ssl_bench.registry import ALGORITHMS, DATASETS, MODELS
from ssl_bench.train.checks import check_train

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
EXCLUDED = ("digits/", "smoke.toml", "cifar10/mma.toml", "da/")  # toy scale; MMA: tests/active; da/: tests/test_domains


def paper_recipe_files() -> list[str]:
    files = (p.relative_to(RECIPES).as_posix() for p in RECIPES.rglob("*.toml"))
    return sorted(f for f in files if not f.startswith(EXCLUDED))


# ------------------------------------------------------------------------------------------------------------------
# the spec, written out per file

# the five folds (docs/reference/common.md#image-encoding-and-datasets, docs/reference/common.md#reporting-protocol)
SEEDS = [1, 2, 3, 4, 5]
TORCHSSL_SEEDS = [1, 2, 3]  # TorchSSL's tables are over 3 seeds (docs/reference/common.md#torchssl-and-usb)

# label budgets of the FixMatch paper's table (docs/reference/published.md#fixmatch-table-2,
# docs/algorithms/fixmatch.md#hyper-parameters)
BUDGETS = {"cifar10": [40, 250, 4000], "cifar100": [400, 2500, 10000], "svhn": [40, 250, 1000], "stl10": [1000]}
# the FixMatch table's entries for Π-Model, Pseudo-Label and Mean Teacher: no 40 (400) labels
# (docs/reference/published.md#fixmatch-baselines)
TABLE2_BASELINE_BUDGETS = {"cifar10": [250, 4000], "cifar100": [2500, 10000], "svhn": [250, 1000], "stl10": [1000]}
# TorchSSL's tables (docs/algorithms/flexmatch.md#hyper-parameters, docs/reference/published.md#torchssl-readme): STL-10
# at 40/250/1000 too
TORCHSSL_BUDGETS = {**BUDGETS, "stl10": [40, 250, 1000]}
# the UDA authors' CIFAR-10 GPU script reports these (docs/reference/published.md#uda-authors)
UDA_AUTHORS_BUDGETS = {"cifar10": [250, 500, 1000, 2000, 4000]}
# (classes, native side) of each dataset (docs/reference/common.md#image-encoding-and-datasets), to build the backbone
DATASET_SHAPE = {"cifar10": (10, 32), "cifar100": (100, 32), "svhn": (10, 32), "stl10": (10, 96)}
# training images (STL-10: 5,000 labeled + 100,000 unlabeled) (docs/reference/common.md#image-encoding-and-datasets)
DATASET_TRAIN = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "stl10": 105_000}

# optimizer conventions (docs/reference/common.md#optimisers-and-weight-decay)
FIXMATCH_OPT = dict(
    steps=2**20,
    optimizer="sgd",
    lr=0.03,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    lr_schedule="cosine",
    ema_buffers="copy",
)  # docs/reference/common.md#optimisers-and-weight-decay item 2, docs/algorithms/fixmatch.md#hyper-parameters
# docs/algorithms/fixmatch.md#hyper-parameters [paper], docs/reference/porting.md#first-wave-checklist item 2
FIXMATCH_OPT_C100 = {**FIXMATCH_OPT, "weight_decay": 1e-3}
# Dash's one released run: lr 0.06, wd 5e-4 (docs/algorithms/dash.md#released-flags); CIFAR-100 keeps FixMatch's 1e-3
# (nothing released, docs/reference/porting.md#open-points-second-wave)
DASH_OPT, DASH_OPT_C100 = {**FIXMATCH_OPT, "lr": 0.06}, {**FIXMATCH_OPT_C100, "lr": 0.06}
# TorchSSL: SGD-Nesterov 0.03, cos(7*pi*k/16K), coupled wd 5e-4 (1e-3 CIFAR-100) on non-bn/bias parameters, EMA 0.999
# with buffers copied, 2^20 iterations (docs/reference/common.md#torchssl-and-usb): the FixMatch values
TORCHSSL_OPT, TORCHSSL_OPT_C100 = dict(FIXMATCH_OPT), dict(FIXMATCH_OPT_C100)
# the UDA authors' repo (docs/algorithms/uda.md#hyper-parameters A)
UDA_AUTHORS_OPT = {**FIXMATCH_OPT, "steps": 500000, "ema_decay": 0.9999, "decay_scope": "all"}
ADAMATCH_OPT = dict(
    steps=131072,
    optimizer="sgd",
    lr=0.03,
    momentum=0.9,
    nesterov=False,
    weight_decay=1e-3,
    lr_schedule="cosine_quarter",
    ema_buffers="average",
    # docs/reference/common.md#optimisers-and-weight-decay item 3, docs/reference/common.md#ema-model,
    # docs/algorithms/adamatch.md#hyper-parameters
)

# backbones: (width, scales, embed_dim); WRN-28-2, WRN-28-8 (CIFAR-100), WRN-37-2 = scales 4 (STL-10)
# (docs/reference/common.md#wrn-28-k, docs/algorithms/fixmatch.md#hyper-parameters)
WRN28_2, WRN28_8, WRN37_2 = (2, 0, 128), (8, 0, 512), (2, 4, 256)
WRN28_2_PARAMS = {False: 1_467_610, True: 1_469_642}  # without / with conv biases (docs/reference/common.md#wrn-28-k)

# augmentation settings (docs/reference/augmentation.md)
CTA_COMMON = dict(strong="ctaugment", cta_depth=2, cta_threshold=0.8, cta_decay=0.99, cta_translate="pixels")
CTA_FIXMATCH = {**CTA_COMMON, "weak": "weak", "cta_sampling": "fixmatch", "cta_cutout": True, "cta_rescale": "fraction"}
CTA_REMIXMATCH = {
    **CTA_COMMON,
    "weak": "weak",
    "cta_sampling": "remixmatch",
    "cta_cutout": False,
    "cta_rescale": "pixels",
}
CTA_REMIXMATCH_STL = {**CTA_REMIXMATCH, "weak": "none"}  # --augment=d.x.d (remixmatch runs/ssl/stl10.sh)
# 16 px of 32 (docs/reference/augmentation.md#randaugment-fixmatch)
RA_32 = dict(weak="weak", strong="randaugment", ra_ops=2, ra_prob=0.5, cutout=0.5)
# cutout_numpy's side stays 16 px on STL-10 (docs/reference/augmentation.md#randaugment-fixmatch)
RA_96 = {**RA_32, "cutout": 16 / 96}
WEAK_ONLY = dict(weak="weak")
# TorchSSL / USB RandAugment(3, 5) + cutout U(0, 0.5) (docs/reference/common.md#torchssl-and-usb); TorchSSL pads 4 px at
# every size
USB_RA_32 = dict(weak="weak", strong="randaugment_usb", cutout=0.5, translate=0.125)
USB_RA_96 = {**USB_RA_32, "translate": 4 / 96}


def mixmatch(w_match: float) -> dict:
    """docs/algorithms/mixmatch.md#hyper-parameters: K 2, T 0.5, alpha 0.75, lambda_U per dataset, ramp 1,024 of 65,536
    kimg."""
    return dict(K=2, T=0.5, alpha=0.75, w_match=w_match, rampup=1 / 64)


def remixmatch(K: int = 8, w_rot: float = 0.5, rampup: float = 1 / 64) -> dict:
    """docs/algorithms/remixmatch.md#hyper-parameters: lambda_U 1.5, lambda_U1 0.5, alpha 0.75, T 0.5, dbuf 128, p_data
    decay 0.999."""
    return dict(K=K, T=0.5, alpha=0.75, w_match=1.5, w_kl=0.5, w_rot=w_rot, rampup=rampup, dbuf=128, p_data_decay=0.999)


FIXMATCH = dict(uratio=7, threshold=0.95, wu=1.0)  # docs/algorithms/fixmatch.md#hyper-parameters
# spec-2: fixmatch-repo flags (docs/algorithms/pseudo_label.md#hyper-parameters,
# docs/algorithms/pi_model.md#hyper-parameters, docs/algorithms/mean_teacher.md#hyper-parameters,
# docs/algorithms/uda.md#hyper-parameters B, docs/algorithms/uda.md#hyper-parameters A), TorchSSL configs
# (docs/algorithms/flexmatch.md#hyper-parameters, docs/algorithms/mma.md#acquisition to
# docs/algorithms/freematch.md#hyper-parameters, docs/reference/porting.md#first-wave-checklist), Dash
# (docs/reference/published.md#fixmatch-table-2)
PSEUDO_LABEL = dict(uratio=1, threshold=0.95, wu=1.0, warmup=0.4, variant="broadcast")
PI_MODEL = dict(uratio=1, wu=10.0, warmup=0.4)
MEAN_TEACHER = dict(uratio=1, wu=50.0, warmup=0.4)
UDA = dict(uratio=7, threshold=0.95, strict=False, T=1.0, wu=1.0, we=0.0, tsa="no", tsa_end=1 / 16)
UDA_AUTHORS = {**UDA, "threshold": 0.8, "strict": True, "T": 0.4, "tsa_end": 1.0}
FLEXMATCH = dict(uratio=7, threshold=0.95, wu=1.0, thresh_warmup=True, mapping="convex", hard_label=True, T=0.5)
FREEMATCH = dict(uratio=7, wu=1.0, wf=0.01, ema_p=0.999, clip="none")
SOFTMATCH = dict(uratio=7, wu=1.0, ema_p=0.999, n_sigma=2.0, dist_align=True, variant="torchssl")
DASH = dict(uratio=7, wu=1.0, T=0.5, gamma=1.27, rho_min=0.05, drop_step=9, warmup_epochs=10, epochs=1024,
            variant="official", C=1.0001, usb_warmup=2048 / 2**20, rho_init=0.0)  # fmt: skip
# docs/algorithms/adamatch.md#hyper-parameters
ADAMATCH = dict(uratio=3, tau=0.9, wu=1.0, warmup=0.5, dbuf=128, p_labeled_decay=0.999)
SUPERVISED = dict(view="weak")


@dataclasses.dataclass(frozen=True)
class Row:
    algorithm: str
    dataset: str
    budgets: list[int]
    train: dict
    model: tuple[int, int, int]
    augment: dict
    params: dict  # every hyper-parameter of the algorithm's Config
    bn_eps: float = 1e-3  # TF 1e-3; objax (AdaMatch) 1e-6 (docs/reference/common.md#wrn-28-k)
    # MixMatch: Gen-1 'SSL' folder excludes them (docs/reference/common.md#label-splits,
    # docs/reference/porting.md#first-wave-checklist item 6)
    unlabeled_includes_labeled: bool = True
    class_balance: str = "balanced"  # SVHN folds are class-proportional (docs/reference/common.md#label-splits)
    # the protocol around the algorithm: the Google repos' unless a row says otherwise (TorchSSL, the UDA authors)
    seeds: tuple[int, ...] = tuple(SEEDS)
    # the papers' run scripts (docs/reference/common.md#image-encoding-and-datasets); TorchSSL and the UDA authors keep
    # none
    n_valid: int = 1
    # SVHN without 'extra'; TorchSSL trains on train + extra (docs/reference/common.md#torchssl-and-usb)
    extra: bool = False
    flip: str = "dataset"  # SVHN's no-flip comes from the dataset; AdaMatch's sm and TorchSSL flip every dataset
    conv_bias: bool = False  # TorchSSL's WideResNet has conv biases
    # TF decay 0.999 (docs/reference/common.md#wrn-28-k); the UDA authors' 0.9 (docs/algorithms/uda.md#hyper-parameters
    # A)
    bn_momentum: float = 0.001


# fmt: off
TABLE: dict[str, Row] = {
    # CIFAR-10: WRN-28-2, wd 5e-4
    "cifar10/supervised.toml":     Row("supervised", "cifar10", [40, 250, 4000], FIXMATCH_OPT, WRN28_2,
                                       {"strong": "randaugment"}, SUPERVISED),
    "cifar10/mixmatch.toml":       Row("mixmatch", "cifar10", [40, 250, 4000], FIXMATCH_OPT, WRN28_2, WEAK_ONLY,
                                       mixmatch(75.0), unlabeled_includes_labeled=False),
    "cifar10/remixmatch.toml":     Row("remixmatch", "cifar10", [250, 4000], FIXMATCH_OPT, WRN28_2, CTA_REMIXMATCH,
                                       remixmatch()),
    "cifar10/remixmatch_40.toml":  Row("remixmatch", "cifar10", [40], FIXMATCH_OPT, WRN28_2, CTA_REMIXMATCH,
                                       remixmatch(K=1, w_rot=2.0, rampup=1 / 8)),
    "cifar10/fixmatch_ra.toml":    Row("fixmatch", "cifar10", [40, 250, 4000], FIXMATCH_OPT, WRN28_2, RA_32,
                                       FIXMATCH),
    "cifar10/fixmatch_cta.toml":   Row("fixmatch", "cifar10", [40, 250, 4000], FIXMATCH_OPT, WRN28_2, CTA_FIXMATCH,
                                       FIXMATCH),
    "cifar10/adamatch.toml":       Row("adamatch", "cifar10", [40, 250, 4000], ADAMATCH_OPT, WRN28_2, CTA_FIXMATCH,
                                       ADAMATCH, bn_eps=1e-6),
    # CIFAR-100: WRN-28-8, wd 1e-3 (FixMatch paper)
    "cifar100/mixmatch.toml":      Row("mixmatch", "cifar100", [400, 2500, 10000], FIXMATCH_OPT_C100, WRN28_8,
                                       WEAK_ONLY, mixmatch(150.0), unlabeled_includes_labeled=False),
    "cifar100/remixmatch.toml":    Row("remixmatch", "cifar100", [400, 2500, 10000], FIXMATCH_OPT_C100, WRN28_8,
                                       CTA_REMIXMATCH, remixmatch()),
    "cifar100/fixmatch_ra.toml":   Row("fixmatch", "cifar100", [400, 2500, 10000], FIXMATCH_OPT_C100, WRN28_8,
                                       RA_32, FIXMATCH),
    "cifar100/fixmatch_cta.toml":  Row("fixmatch", "cifar100", [400, 2500, 10000], FIXMATCH_OPT_C100, WRN28_8,
                                       CTA_FIXMATCH, FIXMATCH),
    "cifar100/adamatch.toml":      Row("adamatch", "cifar100", [400, 2500, 10000], ADAMATCH_OPT, WRN28_8,
                                       CTA_FIXMATCH, ADAMATCH, bn_eps=1e-6),
    # SVHN (no extra): WRN-28-2, wd 5e-4, class-proportional folds
    "svhn/mixmatch.toml":          Row("mixmatch", "svhn", [40, 250, 1000], FIXMATCH_OPT, WRN28_2, WEAK_ONLY,
                                       mixmatch(250.0), unlabeled_includes_labeled=False,
                                       class_balance="proportional"),
    "svhn/remixmatch.toml":        Row("remixmatch", "svhn", [250, 1000], FIXMATCH_OPT, WRN28_2, CTA_REMIXMATCH,
                                       remixmatch(), class_balance="proportional"),
    "svhn/remixmatch_40.toml":     Row("remixmatch", "svhn", [40], FIXMATCH_OPT, WRN28_2, CTA_REMIXMATCH,
                                       remixmatch(K=1, w_rot=3.0), class_balance="proportional"),
    "svhn/fixmatch_ra.toml":       Row("fixmatch", "svhn", [40, 250, 1000], FIXMATCH_OPT, WRN28_2, RA_32,
                                       FIXMATCH, class_balance="proportional"),
    "svhn/fixmatch_cta.toml":      Row("fixmatch", "svhn", [40, 250, 1000], FIXMATCH_OPT, WRN28_2, CTA_FIXMATCH,
                                       FIXMATCH, class_balance="proportional"),
    "svhn/adamatch.toml":          Row("adamatch", "svhn", [40, 250, 1000], ADAMATCH_OPT, WRN28_2, CTA_FIXMATCH,
                                       ADAMATCH, bn_eps=1e-6, class_balance="proportional", flip="always"),
    # STL-10: WRN-37-2 (scales 4), 96 px, wd 5e-4
    "stl10/mixmatch.toml":         Row("mixmatch", "stl10", [1000], FIXMATCH_OPT, WRN37_2, WEAK_ONLY,
                                       mixmatch(50.0), unlabeled_includes_labeled=False),
    "stl10/remixmatch.toml":       Row("remixmatch", "stl10", [1000], FIXMATCH_OPT, WRN37_2, CTA_REMIXMATCH_STL,
                                       remixmatch(K=4)),
    "stl10/fixmatch_ra.toml":      Row("fixmatch", "stl10", [1000], FIXMATCH_OPT, WRN37_2, RA_96, FIXMATCH),
    "stl10/fixmatch_cta.toml":     Row("fixmatch", "stl10", [1000], FIXMATCH_OPT, WRN37_2, CTA_FIXMATCH, FIXMATCH),
    "stl10/adamatch.toml":         Row("adamatch", "stl10", [1000], ADAMATCH_OPT, WRN37_2, CTA_FIXMATCH, ADAMATCH,
                                       bn_eps=1e-6),
}
# fmt: on

# the second wave (spec-2): Google-code baselines and Dash with the Google protocol, TorchSSL's three with theirs
GOOGLE_WAVE2 = {
    "pseudo_label": (TABLE2_BASELINE_BUDGETS, WEAK_ONLY, PSEUDO_LABEL),
    "pi_model": (TABLE2_BASELINE_BUDGETS, WEAK_ONLY, PI_MODEL),
    "mean_teacher": (TABLE2_BASELINE_BUDGETS, WEAK_ONLY, MEAN_TEACHER),
    "uda": (BUDGETS, None, UDA),  # RandAugment as FixMatch (RA): d.d.rac (docs/algorithms/uda.md#hyper-parameters B)
    "dash": (BUDGETS, CTA_FIXMATCH, DASH),  # the CTA FixMatch model (docs/algorithms/dash.md#paper)
}
TORCHSSL = {"flexmatch": FLEXMATCH, "freematch": FREEMATCH, "softmatch": SOFTMATCH}
BACKBONE = {"cifar10": WRN28_2, "cifar100": WRN28_8, "svhn": WRN28_2, "stl10": WRN37_2}


def google_row(algorithm: str, dataset: str) -> Row:
    budgets, augment, params = GOOGLE_WAVE2[algorithm]
    c100 = dataset == "cifar100"
    if algorithm == "dash":
        opt = DASH_OPT_C100 if c100 else DASH_OPT
    else:
        opt = FIXMATCH_OPT_C100 if c100 else FIXMATCH_OPT
    augment = augment or (RA_96 if dataset == "stl10" else RA_32)
    balance = "proportional" if dataset == "svhn" else "balanced"
    return Row(algorithm, dataset, budgets[dataset], opt, BACKBONE[dataset], augment, params, class_balance=balance)


def torchssl_row(algorithm: str, dataset: str) -> Row:
    opt = TORCHSSL_OPT_C100 if dataset == "cifar100" else TORCHSSL_OPT
    augment = USB_RA_96 if dataset == "stl10" else USB_RA_32
    svhn = dataset == "svhn"
    return Row(algorithm, dataset, TORCHSSL_BUDGETS[dataset], opt, BACKBONE[dataset], augment, TORCHSSL[algorithm],
               seeds=tuple(TORCHSSL_SEEDS), n_valid=0, extra=svhn, flip="always" if svhn else "dataset",
               conv_bias=True)  # fmt: skip


for _ds in BUDGETS:
    for _algo in GOOGLE_WAVE2:
        TABLE[f"{_ds}/{_algo}.toml"] = google_row(_algo, _ds)
    for _algo in TORCHSSL:
        TABLE[f"{_ds}/{_algo}.toml"] = torchssl_row(_algo, _ds)
# the UDA authors' own settings (docs/algorithms/uda.md#hyper-parameters A): WRN-28-2 with TF BN decay 0.9 and eps 1e-5,
# no validation split;
# FixMatch's RandAugment stands in for their offline augmentation
TABLE["cifar10/uda_authors.toml"] = Row("uda", "cifar10", UDA_AUTHORS_BUDGETS["cifar10"], UDA_AUTHORS_OPT, WRN28_2,
                                        RA_32, UDA_AUTHORS, bn_eps=1e-5, n_valid=0, bn_momentum=0.1)  # fmt: skip
WAVE2 = {rel for rel in TABLE if Path(rel).stem in (*GOOGLE_WAVE2, *TORCHSSL, "uda_authors")}

# which file holds each (dataset, method): ReMixMatch's 40-label runs differ and live in their own file
METHODS = ("mixmatch", "remixmatch", "fixmatch_ra", "fixmatch_cta", "adamatch")
# every method's budgets per dataset
METHOD_BUDGETS = {
    **{m: BUDGETS for m in METHODS},
    **{m: spec[0] for m, spec in GOOGLE_WAVE2.items()},
    **{m: TORCHSSL_BUDGETS for m in TORCHSSL},
    "uda_authors": UDA_AUTHORS_BUDGETS,
}


def method_of(rel: str) -> str:
    return Path(rel).stem.removesuffix("_40")


# ------------------------------------------------------------------------------------------------------------------
# the checks


def approx_equal(got, want) -> bool:
    if isinstance(want, bool) or not isinstance(want, float):
        return got == want and type(got) is type(want)
    return isinstance(got, float) and got == pytest.approx(want, rel=1e-12, abs=0.0)


def check_protocol(recipe: RecipeConfig, row: Row) -> None:
    """Assert that ``recipe`` follows ``row`` and the shared protocol (docs/reference/common.md#training-loop-units,
    docs/reference/common.md#image-encoding-and-datasets, docs/reference/common.md#wrn-28-k,
    docs/reference/common.md#ema-model, docs/reference/common.md#reporting-protocol)."""
    assert recipe.algorithm.name == row.algorithm
    assert recipe.data.dataset == row.dataset
    assert recipe.grid.n_labels == row.budgets
    assert recipe.grid.seeds == list(row.seeds)
    # data
    # the papers' run scripts: 1 (docs/reference/common.md#image-encoding-and-datasets)
    assert recipe.data.n_valid == row.n_valid
    assert recipe.data.image_size == 0 and recipe.data.extra is row.extra  # native size; SVHN without 'extra'
    assert recipe.data.class_balance == row.class_balance
    assert recipe.data.unlabeled_includes_labeled is row.unlabeled_includes_labeled
    # model
    width, scales, _ = row.model
    assert (recipe.model.name, recipe.model.width, recipe.model.scales) == ("wrn28", width, scales)
    assert recipe.model.conv_bias is row.conv_bias
    assert recipe.model.bn_momentum == pytest.approx(row.bn_momentum)
    assert recipe.model.bn_eps == pytest.approx(row.bn_eps)
    assert recipe.model.leaky_slope == pytest.approx(0.1)
    # train
    expected_train = {
        "batch_size": 64,
        "ema_decay": 0.999,
        "ema_warmup": False,
        "eval_every": 1024,
        "median_k": 20,
        "decay_scope": "weights",
        **row.train,
    }
    for key, want in expected_train.items():
        got = getattr(recipe.train, key)
        assert approx_equal(got, want), f"train.{key}: got {got!r}, want {want!r}"
    # augment
    for key, want in row.augment.items():
        got = getattr(recipe.augment, key)
        assert approx_equal(got, want), f"augment.{key}: got {got!r}, want {want!r}"
    # SVHN's no-flip comes from the dataset, not the recipe; AdaMatch's sm and TorchSSL flip every dataset
    # (docs/reference/common.md#weak-augmentation)
    assert recipe.augment.flip == row.flip
    # 4 px at 32, 12 px at 96 (docs/reference/common.md#weak-augmentation); TorchSSL's 4 px at 96 is in its augment row
    assert recipe.augment.translate == pytest.approx(row.augment.get("translate", 0.125))
    # algorithm: every hyper-parameter of its Config is pinned
    params = dataclasses.asdict(recipe.algorithm)
    params.pop("name")
    assert set(params) == set(row.params), f"algorithm keys {sorted(params)} vs table {sorted(row.params)}"
    for key, want in row.params.items():
        assert approx_equal(params[key], want), f"algorithm.{key}: got {params[key]!r}, want {want!r}"


def test_every_paper_recipe_is_in_the_table():
    files = paper_recipe_files()
    assert files, f"no recipes found under {RECIPES}"
    assert set(files) == set(TABLE), (
        f"recipes without a table row: {sorted(set(files) - set(TABLE))}; "
        f"table rows without a recipe: {sorted(set(TABLE) - set(files))}"
    )


@pytest.mark.parametrize(
    ("dataset", "method"), [(d, m) for m, budgets in METHOD_BUDGETS.items() for d in sorted(budgets)]
)
def test_each_method_covers_the_paper_budgets_once(dataset, method):
    """Across its files (e.g. remixmatch.toml + remixmatch_40.toml), a method runs each paper budget exactly once."""
    budgets = [
        n
        for rel, row in TABLE.items()
        if rel.startswith(f"{dataset}/") and method_of(rel) == method
        for n in row.budgets
    ]
    assert sorted(budgets) == METHOD_BUDGETS[method][dataset]


def test_every_recipe_file_is_a_method_with_budgets():
    assert {method_of(rel) for rel in TABLE} - {"supervised"} == set(METHOD_BUDGETS)


@pytest.mark.parametrize("rel", sorted(TABLE))
def test_recipe_matches_the_reference_protocol(rel):
    recipe = load_recipe(RECIPES / rel)
    assert recipe.algorithm.name in ALGORITHMS
    assert recipe.data.dataset in DATASETS
    assert recipe.model.name in MODELS
    check_protocol(recipe, TABLE[rel])


@pytest.mark.parametrize("rel", sorted(TABLE))
def test_expand_gives_budgets_times_seeds_runs(rel):
    recipe = load_recipe(RECIPES / rel)
    runs = expand(recipe)
    row = TABLE[rel]
    assert [(r.data.n_labels, r.seed) for r in runs] == [(n, s) for n in row.budgets for s in row.seeds]
    for run in runs:
        assert run.data == dataclasses.replace(recipe.data, n_labels=run.data.n_labels)
        assert (run.model, run.augment, run.train, run.algorithm) == (
            recipe.model,
            recipe.augment,
            recipe.train,
            recipe.algorithm,
        )
        check_train(run.train)  # device and packages present
        check_policies(run.augment)  # both augmentation policies build


@pytest.mark.parametrize("rel", sorted(TABLE))
def test_backbone_and_algorithm_build(rel):
    """The backbone has the table's width/scales (pooled embedding 16*k*2^(scales-1)) and the algorithm builds."""
    recipe = load_recipe(RECIPES / rel)
    from ssl_bench.models import create_model

    num_classes, side = DATASET_SHAPE[recipe.data.dataset]
    model = create_model(recipe.model, num_classes, 3, side)
    assert model.embed_dim == TABLE[rel].model[2]
    # WRN-28-2 without conv biases; TorchSSL's has them, like TF's (docs/reference/common.md#wrn-28-k)
    if TABLE[rel].model == WRN28_2:
        assert sum(p.numel() for p in model.parameters()) == WRN28_2_PARAMS[TABLE[rel].conv_bias]
    # what a run would tell the algorithm (FlexMatch keeps a label per training image): sizes of the training set
    n_train = DATASET_TRAIN[recipe.data.dataset] + (531_131 if recipe.data.extra else 0)
    n_labeled = max(TABLE[rel].budgets)
    data = DataInfo(num_classes, n_train, n_labeled, n_train, (n_labeled // num_classes,) * num_classes)
    cls = get_algorithm(recipe.algorithm.name)
    extra = {"data": data} if "data" in inspect.signature(cls).parameters else {}
    algo = cls(model, recipe.algorithm, num_classes, **extra)
    spec = algo.views()
    assert spec.uratio == TABLE[rel].params.get("uratio", 1 if spec.unlabeled else 0)


def test_fixmatch_variants_differ_only_in_the_strong_augmentation():
    for dataset in BUDGETS:
        ra = load_recipe(RECIPES / dataset / "fixmatch_ra.toml")
        cta = load_recipe(RECIPES / dataset / "fixmatch_cta.toml")
        assert ra.augment.strong == "randaugment" and cta.augment.strong == "ctaugment"
        assert (ra.grid, ra.data, ra.model, ra.train, ra.algorithm) == (
            cta.grid,
            cta.data,
            cta.model,
            cta.train,
            cta.algorithm,
        )


@pytest.mark.parametrize("family", [tuple(TORCHSSL), ("pseudo_label", "pi_model", "mean_teacher")])
def test_a_family_differs_only_in_the_algorithm(family):
    """TorchSSL's three share one protocol per dataset (docs/reference/common.md#torchssl-and-usb), as do the fixmatch
    repo's Gen-2 baselines (docs/reference/common.md#gen-2-baselines)."""
    for dataset in BUDGETS:
        first, *others = (load_recipe(RECIPES / dataset / f"{m}.toml") for m in family)
        for other in others:
            assert (other.grid, other.data, other.model, other.augment, other.train) == (
                first.grid,
                first.data,
                first.model,
                first.augment,
                first.train,
            )


def header(rel: str) -> str:
    return "\n".join(line for line in (RECIPES / rel).read_text().splitlines() if line.startswith("#"))


@pytest.mark.parametrize("rel", sorted(WAVE2))
def test_second_wave_recipes_say_what_they_are_and_what_they_do_not_reproduce(rel):
    """Header and description say it is paper scale and needs a GPU; the comments name what the suite cannot
    reproduce (docs/reference/common.md#torchssl-and-usb, docs/algorithms/uda.md#hyper-parameters A,
    docs/algorithms/dash.md#released-flags, docs/reference/porting.md#open-points-second-wave)."""
    recipe, text, algo = load_recipe(RECIPES / rel), header(rel), Path(rel).stem
    assert text.startswith("# Paper scale (needs a GPU): ") and recipe.description.endswith("needs a GPU")
    if algo in TORCHSSL:
        assert "randaugment_usb" in text and "best test" in text and "mean/std" in text
        assert ("train + extra" in text) is (recipe.data.dataset == "svhn")
        assert ("WideResNetVar" in text) is (recipe.data.dataset == "stl10")
    if algo == "dash":
        assert "not released" in text
    if algo == "uda_authors":
        assert "offline" in text and "Not reproduced" in text


DEFAULTS = {
    "grid": GridConfig(),
    "data": DataConfig(),
    "model": ModelConfig(),
    "augment": AugmentConfig(),
    "train": TrainConfig(),
}
UNCOMMENTED_OK = {
    ("", "name"),
    ("", "description"),
    ("grid", "n_labels"),
    ("data", "dataset"),
    ("model", "name"),
    ("algorithm", "name"),
}


@pytest.mark.parametrize("rel", sorted(set(TABLE) - {"cifar10/supervised.toml"}))
def test_every_non_default_value_cites_its_source(rel):
    """Each key whose value differs from the config default carries a trailing ``# ...`` comment."""
    path = RECIPES / rel
    values = tomllib.loads(path.read_text())
    defaults = {**DEFAULTS, "algorithm": get_algorithm(values["algorithm"]["name"]).Config()}
    section = ""
    missing = []
    for line in path.read_text().splitlines():
        if m := re.match(r"^\[(\w+)\]\s*$", line):
            section = m.group(1)
            continue
        m = re.match(r"^(\w+)\s*=\s*(.*)$", line)
        if not m or (section, m.group(1)) in UNCOMMENTED_OK:
            continue
        key = m.group(1)
        value = values[section][key] if section else values[key]
        default = getattr(defaults[section], key)
        differs = not (value == default if isinstance(default, (bool, str, list)) else value == pytest.approx(default))
        if differs and "#" not in m.group(2):
            missing.append(f"{section}.{key}")
    assert not missing, f"{rel}: non-default values without a source comment: {missing}"


# ------------------------------------------------------------------------------------------------------------------
# the checks can fail


@pytest.mark.parametrize(
    ("rel", "override"),
    [
        ("cifar10/fixmatch_cta.toml", "train.lr=0.002"),
        ("cifar10/fixmatch_cta.toml", "augment.cta_sampling=remixmatch"),
        ("cifar10/fixmatch_ra.toml", "algorithm.threshold=0.9"),
        ("cifar100/fixmatch_ra.toml", "train.weight_decay=5e-4"),
        ("cifar10/remixmatch_40.toml", "algorithm.K=8"),
        ("cifar10/remixmatch.toml", "augment.cta_rescale=fraction"),
        ("svhn/mixmatch.toml", "data.class_balance=balanced"),
        ("svhn/remixmatch_40.toml", "algorithm.w_rot=2.0"),
        ("stl10/fixmatch_ra.toml", "augment.cutout=0.5"),
        ("stl10/mixmatch.toml", "model.scales=0"),
        ("cifar10/adamatch.toml", "train.nesterov=true"),
        ("cifar10/adamatch.toml", "train.ema_buffers=copy"),
        ("cifar10/mixmatch.toml", "grid.seeds=[1, 2, 3]"),
        ("cifar10/mixmatch.toml", "grid.n_labels=[250, 4000]"),
        ("cifar10/mixmatch.toml", "data.unlabeled_includes_labeled=true"),
        ("cifar10/mixmatch.toml", "train.median_k=10"),
        ("cifar100/pi_model.toml", "model.width=2"),
        ("cifar10/pseudo_label.toml", "algorithm.variant=masked"),
        ("svhn/mean_teacher.toml", "data.class_balance=balanced"),
        ("stl10/uda.toml", "augment.cutout=0.5"),
        ("cifar10/uda.toml", "algorithm.T=0.4"),
        ("cifar10/uda_authors.toml", "train.decay_scope=weights"),
        ("cifar10/uda_authors.toml", "train.ema_decay=0.999"),
        ("cifar10/uda_authors.toml", "model.bn_momentum=0.001"),
        ("cifar10/dash.toml", "train.lr=0.03"),
        ("cifar100/dash.toml", "train.weight_decay=5e-4"),
        ("cifar10/flexmatch.toml", "augment.strong=randaugment"),
        ("cifar10/freematch.toml", "model.conv_bias=false"),
        ("cifar10/softmatch.toml", "grid.seeds=[1, 2, 3, 4, 5]"),
        ("svhn/flexmatch.toml", "data.extra=false"),
        ("svhn/softmatch.toml", "augment.flip=dataset"),
        ("stl10/freematch.toml", "augment.translate=0.125"),
        ("stl10/flexmatch.toml", "grid.n_labels=[1000]"),
        ("cifar100/softmatch.toml", "train.weight_decay=5e-4"),
        ("svhn/freematch.toml", "algorithm.clip=torchssl"),
    ],
)
def test_check_protocol_rejects_a_changed_value(rel, override):
    recipe = load_recipe(RECIPES / rel, [override])
    with pytest.raises(AssertionError):
        check_protocol(recipe, TABLE[rel])
