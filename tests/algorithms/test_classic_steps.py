"""One step of Pseudo-Label, Π-Model, Mean Teacher and UDA against a re-derivation from docs/reference/common.md
docs/algorithms/pseudo_label.md to docs/algorithms/uda.md: plain tensor maths on deep copies of the backbone, the passes
and BatchNorm updates the spec names, the losses written out as the reference code computes them, and the gradients
compared (which checks the stop-gradients)."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from ssl_bench.augment.views import Batch
from ssl_bench.conformance import NUM_CLASSES, TINY_DATA, tiny_run
from tests.algorithms.test_reference_steps import (
    assert_bn_equal,
    assert_grads_equal,
    bn_stats,
    close,
    hard_ce_per_sample,
    images,
    log_softmax,
    softmax,
    stats_after_one_pass,
)

C = NUM_CLASSES


def make(name: str, head: str = "sharp", **overrides):
    """The algorithm of the tiny run (teacher bound to its EMA), its config replaced by ``overrides``. ``head``:
    "sharp" scales the classifier by 4 (some, not all, images pass a 0.95 threshold), "spread" draws it anew so
    that the predictions spread over three classes and confidences of 0.4 to 0.96, "plain" leaves it."""
    parts = tiny_run(name)
    algo = parts.algorithm
    if overrides:
        cls = type(algo)
        algo = cls(algo.model, dataclasses.replace(cls.Config(), **overrides), C, data=TINY_DATA).train()
        algo.bind_teacher(parts.ema.model)
    weight = algo.model.head.weight
    with torch.no_grad():
        if head == "sharp":
            weight.mul_(4.0)
        elif head == "spread":
            weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    return algo, parts.ema.model


def case(algo, seed: int, views: int):
    gen = torch.Generator().manual_seed(seed)
    b = 8
    u = tuple(images(gen, b * algo.cfg.uratio) for _ in range(views))
    return Batch(x=(images(gen, b),), y=torch.tensor([0, 1, 2, 3, 3, 2, 1, 0]), u=u)


# ------------------------------------------------------------------------------------------------ Pseudo-Label
# (docs/algorithms/pseudo_label.md)


@pytest.mark.parametrize("loss_kind", ["broadcast", "masked"])
@pytest.mark.parametrize("progress", [0.1, 0.7])
def test_pseudo_label_step_matches_reference(loss_kind, progress):
    algo, _ = make("pseudo_label", variant=loss_kind)
    batch = case(algo, 3, 1)
    (x,), y, (u,) = batch.x, batch.y, batch.u
    ref = copy.deepcopy(algo.model)
    # only the labeled pass updates BN (docs/reference/common.md#gen-2-baselines)
    expected_bn = stats_after_one_pass(algo.model, x)

    loss, metrics = algo.step(batch, progress)

    zx, zu = ref(x), ref(u)  # two training-mode passes
    ls = hard_ce_per_sample(zx, y).mean()
    conf, yhat = softmax(zu.detach()).max(dim=1)
    mask = (conf > 0.95).float()  # strict
    assert 0 < int(mask.sum()) < len(u)
    ce = hard_ce_per_sample(zu, yhat)  # gradient into the pass that made the label
    if loss_kind == "broadcast":  # pseudo_label.py: loss [B] times mask [B, 1], reduce_mean over [B, B]
        lu = (ce.view(1, -1) * mask.view(-1, 1)).mean()
    else:
        lu = (ce * mask).sum() / len(u)
    w = min(progress / 0.4, 1.0)
    expected = ls + w * lu
    close(loss, expected)
    close(metrics["loss/u"], lu)
    close(metrics["monitor/wu"], w)
    assert_bn_equal(algo.model, expected_bn, "the labeled pass")
    loss.backward()
    expected.backward()
    assert_grads_equal(algo.model, ref)


def test_pseudo_label_broadcast_and_masked_mean_differ_as_the_erratum_says():
    """mean(CE) x mean(mask) against mean(CE x mask): on the same step they differ, by the unconfident images' CE."""
    losses = {}
    for kind in ("broadcast", "masked"):
        algo, _ = make("pseudo_label", variant=kind)
        losses[kind] = float(algo.step(case(algo, 3, 1), 1.0)[1]["loss/u"])
    assert losses["broadcast"] > 1.5 * losses["masked"] > 0


def confidence_equal_to_threshold(name: str, **overrides):
    """The algorithm with its threshold set to exactly the weak confidence of one unlabeled image of the case."""
    algo, _ = make(name, **overrides)
    batch = case(algo, 3, len(algo.views().unlabeled))
    with torch.no_grad():
        ref = copy.deepcopy(algo.model)
        z = ref(batch.u[0]) if name == "pseudo_label" else ref(torch.cat([batch.x[0], *batch.u]))[8 : 8 + 8]
        conf = z.softmax(dim=1).max(dim=1).values
    algo.cfg = dataclasses.replace(algo.cfg, threshold=float(conf[0]))
    return algo, batch, (conf >= conf[0]).float().mean(), (conf > conf[0]).float().mean()


def test_pseudo_label_threshold_is_strict_and_uda_b_is_not():
    algo, batch, ge, gt = confidence_equal_to_threshold("pseudo_label")
    close(algo.step(batch, 1.0)[1]["monitor/mask"], gt)
    algo, batch, ge, gt = confidence_equal_to_threshold("uda", uratio=1)
    close(algo.step(batch, 1.0)[1]["monitor/mask"], ge)
    algo, batch, ge, gt = confidence_equal_to_threshold("uda", uratio=1, strict=True)  # the authors' repo: '>'
    close(algo.step(batch, 1.0)[1]["monitor/mask"], gt)
    assert ge > gt


# -------------------------------------------------------------------------------------- Π-Model and Mean Teacher


@pytest.mark.parametrize("progress", [0.05, 0.6])
def test_pi_model_step_matches_reference(progress):
    algo, _ = make("pi_model")
    batch = case(algo, 5, 2)
    (x,), y, (u1, u2) = batch.x, batch.y, batch.u
    ref = copy.deepcopy(algo.model)
    expected_bn = stats_after_one_pass(algo.model, x)

    loss, metrics = algo.step(batch, progress)

    zx = ref(x)
    z1 = ref(u1).detach()  # sg(f(view 1))
    z2 = ref(u2)
    lpm = ((softmax(z1) - softmax(z2)) ** 2).sum() / (len(u1) * C)  # mean over classes, then over the batch
    w = 10.0 * min(progress / 0.4, 1.0)
    expected = hard_ce_per_sample(zx, y).mean() + w * lpm
    close(loss, expected)
    close(metrics["loss/u"], lpm)
    assert_bn_equal(algo.model, expected_bn, "the labeled pass")
    loss.backward()
    expected.backward()
    assert_grads_equal(algo.model, ref)


def teacher_case():
    algo, ema = make("mean_teacher")
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():  # a teacher unlike the student, with running statistics of its own
        for p in ema.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        for m in ema.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(0.3)
    return algo, ema, case(algo, 7, 2)


@pytest.mark.parametrize("progress", [0.1, 0.9])
def test_mean_teacher_step_matches_reference(progress):
    algo, ema, batch = teacher_case()
    (x,), y, (u1, u2) = batch.x, batch.y, batch.u
    ref, teacher = copy.deepcopy(algo.model), copy.deepcopy(ema).train()  # the TF teacher: training-mode BN
    expected_bn, ema_bn = stats_after_one_pass(algo.model, x), bn_stats(ema)

    loss, metrics = algo.step(batch, progress)

    with torch.no_grad():
        zt = teacher(u1)  # EMA weights, batch statistics of this pass
    zs = ref(u2)
    lmt = ((softmax(zt) - softmax(zs)) ** 2).sum() / (len(u1) * C)
    w = 50.0 * min(progress / 0.4, 1.0)
    expected = hard_ce_per_sample(ref(x), y).mean() + w * lmt
    close(loss, expected)
    close(metrics["loss/u"], lmt)
    assert_bn_equal(algo.model, expected_bn, "the labeled pass")
    for a, b in zip(bn_stats(ema), ema_bn, strict=True):
        assert torch.equal(a, b), "the teacher's running statistics moved"
    loss.backward()
    expected.backward()
    assert_grads_equal(algo.model, ref)


def test_mean_teacher_consistency_gradient_reaches_the_student_not_the_teacher():
    """The port that takes the student's logits from the teacher's no-gradient pass trains on labels only
    (docs/algorithms/mean_teacher.md#ports): here the consistency loss alone moves every weight of the student and none
    of the teacher."""
    algo, ema, batch = teacher_case()
    loss, _ = algo.step(batch, 1.0)
    loss.backward()
    labeled_only = copy.deepcopy(algo.model)  # same weights; training-mode BN, so the same labeled pass
    labeled_only.zero_grad()
    torch.nn.functional.cross_entropy(labeled_only(batch.x[0]), batch.y).backward()
    for (name, p), q in zip(algo.model.named_parameters(), labeled_only.parameters(), strict=True):
        assert (p.grad - q.grad).abs().max() > 0, f"the consistency loss did not reach the student's {name}"
    assert all(p.grad is None and not p.requires_grad for p in ema.parameters())


# ------------------------------------------------------------------------------------------------------ UDA
# (docs/algorithms/uda.md)


def tsa_eta(progress: float, end: float, schedule: str) -> float:
    r = progress / end
    alpha = {"linear": r, "exp": math.exp((r - 1) * 5), "log": 1 - math.exp(-r * 5), "no": 1.0}[schedule]
    return min(alpha, 1.0) * (1 - 1 / C) + 1 / C


@pytest.mark.parametrize(
    "overrides, progress",
    [
        ({}, 0.3),  # fixmatch repo: τ 0.95 (>=), T 1, no TSA
        ({"threshold": 0.8, "strict": True, "T": 0.4, "tsa": "linear", "tsa_end": 1.0, "we": 0.1}, 0.3),
        ({"tsa": "exp"}, 0.05),
        ({"tsa": "log", "T": 0.4}, 0.01),
    ],
)
def test_uda_step_matches_reference(overrides, progress):
    algo, _ = make("uda", **overrides)
    cfg = algo.cfg
    batch = case(algo, 13, 2)
    (x,), y, (uw, us) = batch.x, batch.y, batch.u
    b, ub = len(x), len(uw)
    ref = copy.deepcopy(algo.model)
    expected_bn = stats_after_one_pass(algo.model, torch.cat([x, uw, us]))  # one pass, every BN update kept

    loss, metrics = algo.step(batch, progress)

    z = ref(torch.cat([x, uw, us]))
    zx, zw, zs = z[:b], z[b : b + ub], z[b + ub :]
    eta = tsa_eta(progress, cfg.tsa_end, cfg.tsa)
    p_correct = softmax(zx.detach())[torch.arange(b), y]
    keep = (p_correct <= eta).float()
    ls = (keep * hard_ce_per_sample(zx, y)).sum() / max(float(keep.sum()), 1.0)
    conf = softmax(zw.detach()).max(dim=1).values
    mask = ((conf > cfg.threshold) if cfg.strict else (conf >= cfg.threshold)).float()
    t = softmax(zw.detach() / cfg.T)
    kl = (t * (torch.log(t) - log_softmax(zs))).sum(dim=1)
    lu = (kl * mask).mean()
    ent = -(softmax(zw) * log_softmax(zw)).sum(dim=1).mean()
    expected = ls + cfg.wu * lu + cfg.we * ent
    close(loss, expected, rtol=1e-4)
    close(metrics["loss/u"], lu, rtol=1e-4)
    close(metrics["monitor/tsa_kept"], keep.mean())
    if cfg.tsa != "no":
        assert 0 < int(keep.sum()) < b, "the case must drop some labeled images and keep others"
    assert_bn_equal(algo.model, expected_bn, "the single concatenated pass")
    loss.backward()
    expected.backward()
    assert_grads_equal(algo.model, ref)


def test_uda_temperature_is_applied():
    """T sharpens the target (one port drops it, docs/algorithms/uda.md#ports): the loss changes with T."""
    values = []
    for t in (1.0, 0.4):
        algo, _ = make("uda", T=t, threshold=0.0)
        values.append(float(algo.step(case(algo, 13, 2), 0.5)[1]["loss/u"]))
    assert values[0] != pytest.approx(values[1], rel=1e-3)
