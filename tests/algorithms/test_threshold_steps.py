"""One step of FlexMatch, FreeMatch, SoftMatch and Dash against a re-derivation from docs/reference/common.md
docs/algorithms/flexmatch.md to docs/algorithms/dash.md (hand-worked numbers where the state decides, a transcription of
the spec's formulas elsewhere), and the order-sensitive facts each on its own: FlexMatch reads the selections of earlier
steps and starts with every threshold at 0, FreeMatch and SoftMatch update their statistics before reading them,
FreeMatch survives an empty selection, SoftMatch fits its Gaussian before the alignment, Dash keeps the losses of the
last warm-up epoch."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ssl_bench.augment.views import Batch
from ssl_bench.conformance import NUM_CLASSES, TINY_DATA
from tests.algorithms.test_classic_steps import make
from tests.algorithms.test_reference_steps import (
    assert_bn_equal,
    assert_grads_equal,
    close,
    hard_ce_per_sample,
    images,
    log_softmax,
    softmax,
    stats_after_one_pass,
)

C = NUM_CLASSES
B = 8


def batch_of(algo, seed: int, idx_u: torch.Tensor | None = None) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    ub = B * algo.cfg.uratio
    idx_u = torch.arange(B, B + ub) if idx_u is None else idx_u
    return Batch(
        x=(images(gen, B),),
        y=torch.tensor([0, 1, 2, 3, 3, 2, 1, 0]),
        u=(images(gen, ub), images(gen, ub)),
        idx_x=torch.arange(B),
        idx_u=idx_u,
    )


def one_pass(algo, batch):
    """Reference logits of the single concatenated pass, and the BN statistics it must leave
    (docs/reference/common.md#torchssl-and-usb)."""
    (x,), (uw, us) = batch.x, batch.u
    ref = copy.deepcopy(algo.model)
    expected_bn = stats_after_one_pass(algo.model, torch.cat([x, uw, us]))
    z = ref(torch.cat([x, uw, us]))
    return ref, expected_bn, z[:B], z[B : B + len(uw)], z[B + len(uw) :]


def finish(algo, ref, expected_bn, loss, expected):
    close(loss, expected, rtol=1e-4)
    assert_bn_equal(algo.model, expected_bn, "the single concatenated pass")
    loss.backward()
    expected.backward()
    assert_grads_equal(algo.model, ref)


# -------------------------------------------------------------------------------------------------- FlexMatch
# (docs/algorithms/flexmatch.md)


PRESET_BETA = [20 / 29, 5 / 29, 0, 2 / 29]  # σ / max(σ_−1, max σ) = σ / 29 with the warm-up


def preset_selection(algo) -> dict[int, int]:
    """σ = [20, 5, 0, 2] over 27 selected pool images (positions 8-34); the other 29 of the 56 never selected."""
    chosen = {8 + i: 0 if i < 20 else 1 if i < 25 else 3 for i in range(27)}
    for i, c in chosen.items():
        algo.selected_label[i] = c
    return chosen


@pytest.mark.parametrize("warmup, beta", [(True, PRESET_BETA), (False, [1, 5 / 20, 0, 2 / 20])])
def test_flexmatch_step_matches_reference(warmup, beta):
    algo, _ = make("flexmatch", head="spread", thresh_warmup=warmup)
    assert TINY_DATA.n_unlabeled == 56
    chosen = preset_selection(algo)
    batch = batch_of(algo, 17)
    ref, expected_bn, zx, zw, zs = one_pass(algo, batch)
    before = algo.selected_label.clone()

    loss, metrics = algo.step(batch, 0.5)

    close(algo.classwise_acc, beta)
    conf, yhat = softmax(zw.detach()).max(dim=1)
    thresholds = [0.95 * b / (2 - b) for b in beta]  # τ · M(β), M convex
    mask = torch.tensor([float(conf[i] >= thresholds[int(yhat[i])]) for i in range(len(conf))])
    assert 0 < int(mask.sum()) < len(conf)
    lu = (hard_ce_per_sample(zs, yhat) * mask).mean()
    expected = hard_ce_per_sample(zx, batch.y).mean() + lu
    close(metrics["monitor/mask"], mask.mean())
    # selections at the fixed τ = 0.95 overwrite; every other entry, the preset ones included, stays
    after = before.clone()
    for pos, i in enumerate(batch.idx_u.tolist()):
        if conf[pos] >= 0.95:
            after[i] = int(yhat[pos])
    assert torch.equal(algo.selected_label, after) and not torch.equal(after, before)
    assert all(int(algo.selected_label[i]) >= 0 for i in chosen)  # never reset to −1
    finish(algo, ref, expected_bn, loss, expected)


def test_flexmatch_first_step_has_every_threshold_at_zero():
    algo, _ = make("flexmatch")
    assert (algo.selected_label == -1).all()
    loss, metrics = algo.step(batch_of(algo, 17), 0.0)
    assert torch.equal(algo.classwise_acc, torch.zeros(C))
    assert float(metrics["monitor/mask"]) == 1.0  # every unlabeled image gets a hard pseudo-label
    assert float(metrics["monitor/threshold"]) == 0.0
    assert (algo.selected_label >= 0).any()  # this step's confident images are selected, for the next steps


def test_flexmatch_reads_the_selections_of_earlier_steps_only():
    """A step that selects images of class c does not lower that class's threshold for itself
    (docs/reference/common.md#statistic-update-order)."""
    algo, _ = make("flexmatch", head="spread")
    preset_selection(algo)
    batch = batch_of(algo, 17)
    _, _, _, zw, _ = one_pass(algo, batch)
    conf = softmax(zw.detach()).max(dim=1).values
    assert (conf >= 0.95).any()
    algo.step(batch, 0.5)
    close(algo.classwise_acc, PRESET_BETA)  # the preset counts, not those after this step
    sel = algo.selected_label[algo.selected_label >= 0]
    sigma = torch.bincount(sel, minlength=C).float()
    beta_next = sigma / max(56 - float(sigma.sum()), float(sigma.max()))
    close(algo.learning_effect(), beta_next)  # the next step reads this step's selections
    assert not torch.allclose(beta_next, torch.tensor(PRESET_BETA))


def test_flexmatch_keeps_beta_when_every_pool_image_is_one_class():
    algo, _ = make("flexmatch")
    algo.classwise_acc.copy_(torch.tensor([0.5, 0.25, 0.0, 0.125]))
    algo.selected_label[B:] = 2  # max count = N: the reference leaves classwise_acc as it was
    close(algo.learning_effect(), [0.5, 0.25, 0.0, 0.125])


def test_flexmatch_pool_size_comes_from_the_data_not_the_buffer():
    """σ_−1 counts the never-selected images of the pool (56), not every training position (64)."""
    algo, _ = make("flexmatch")
    algo.selected_label[B] = 1
    close(algo.learning_effect(), [0, 1 / 55, 0, 0])


def test_flexmatch_refuses_a_batch_without_positions():
    """Without idx_u there is no image to write a selection for: one clear error, the selections left as they were
    (a batch of one unlabeled image would otherwise broadcast its selection over every position)."""
    algo, _ = make("flexmatch")
    batch = batch_of(algo, 17)
    batch.idx_u = None
    with pytest.raises(RuntimeError, match="idx_u"):
        algo.step(batch, 0.0)
    assert (algo.selected_label == -1).all()


# -------------------------------------------------------------------------------------------------- FreeMatch
# (docs/algorithms/freematch.md)


def freematch_reference(zw, zs, tau0, p0, h0, m=0.999):
    """τ, p̃, h̃ updated with this batch first, then the mask and the fairness term as the TorchSSL code computes
    them (boolean selection, bincount, 1/0 -> 0)."""
    q = softmax(zw.detach())
    conf, yhat = q.max(dim=1)
    tau = m * tau0 + (1 - m) * conf.mean()
    p = m * p0 + (1 - m) * q.mean(dim=0)
    h = m * h0 + (1 - m) * torch.bincount(yhat, minlength=C).float() / len(yhat)
    mask = conf >= tau * (p / p.max())[yhat]
    ps = softmax(zs[mask])
    hist_s = torch.bincount(ps.argmax(dim=1), minlength=C).float()
    hist_s = hist_s / hist_s.sum()
    inv = lambda v: torch.where(v == 0, torch.zeros_like(v), 1 / v)  # noqa: E731
    a = p * inv(h)
    a = a / a.sum()
    bb = ps.mean(dim=0) * inv(hist_s)
    bb = bb / bb.sum()
    lf = (a * torch.log(bb + 1e-12)).sum()
    lu = (hard_ce_per_sample(zs, yhat) * mask.float()).mean()
    return tau, p, h, mask.float(), lu, lf


def test_freematch_step_matches_reference():
    algo, _ = make("freematch", head="spread")
    algo.time_p.fill_(0.7)  # as after earlier steps: some confidences pass, some do not
    batch = batch_of(algo, 23)
    ref, expected_bn, zx, zw, zs = one_pass(algo, batch)
    uniform = torch.full((C,), 1 / C)

    loss, metrics = algo.step(batch, 0.5)

    tau, p, h, mask, lu, lf = freematch_reference(zw, zs, 0.7, uniform, uniform)
    close(algo.time_p, tau)  # updated before it was read: the mask below uses these values
    close(algo.p_model, p)
    close(algo.label_hist, h)
    assert 0 < int(mask.sum()) < len(mask)
    close(metrics["monitor/mask"], mask.mean())
    close(metrics["loss/fairness"], lf, rtol=1e-4)
    expected = hard_ce_per_sample(zx, batch.y).mean() + lu + 0.01 * lf
    finish(algo, ref, expected_bn, loss, expected)


def test_freematch_reads_its_statistics_after_updating_them():
    """With τ at 0.9 before the step, the mask follows the τ updated with this batch, not the 0.9."""
    algo, _ = make("freematch", head="spread", ema_p=0.5)
    batch = batch_of(algo, 23)
    _, _, _, zw, _ = one_pass(algo, batch)
    conf = softmax(zw.detach()).max(dim=1).values
    algo.time_p.fill_(0.9)
    _, metrics = algo.step(batch, 0.5)
    updated = 0.5 * 0.9 + 0.5 * float(conf.mean())
    p = 0.5 * torch.full((C,), 1 / C) + 0.5 * softmax(zw.detach()).mean(dim=0)
    thr = updated * (p / p.max())[softmax(zw.detach()).argmax(dim=1)]
    close(metrics["monitor/mask"], (conf >= thr).float().mean())
    assert float((conf >= 0.9).float().mean()) != pytest.approx(float(metrics["monitor/mask"]))  # τ read before


def test_freematch_with_no_selected_image_has_zero_fairness_and_finite_gradients():
    algo, _ = make("freematch")
    algo.time_p.fill_(5.0)  # no confidence reaches a threshold near 5
    loss, metrics = algo.step(batch_of(algo, 23), 0.5)
    assert float(metrics["monitor/mask"]) == 0.0 and float(metrics["loss/fairness"]) == 0.0
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in algo.model.parameters())


@pytest.mark.parametrize("clip", ["usb", "torchssl"])
def test_freematch_clip_variants(clip):
    algo, _ = make("freematch", head="spread", clip=clip)
    algo.time_p.fill_(0.99)
    batch = batch_of(algo, 23)
    _, _, _, zw, _ = one_pass(algo, batch)
    q = softmax(zw.detach())
    conf, yhat = q.max(dim=1)
    tau = 0.999 * 0.99 + 0.001 * float(conf.mean())
    p = 0.999 / C + 0.001 * q.mean(dim=0)
    _, metrics = algo.step(batch, 0.5)
    if clip == "usb":  # the global τ is clamped to [0, 0.95]
        close(algo.time_p, 0.95)
        expected = conf >= 0.95 * (p / p.max())[yhat]
    else:  # the class thresholds are clamped to [0.9, 0.95]; the stored τ is not
        close(algo.time_p, tau)
        expected = conf >= (tau * p / p.max()).clamp(0.9, 0.95)[yhat]
    close(metrics["monitor/mask"], expected.float().mean())


# -------------------------------------------------------------------------------------------------- SoftMatch
# (docs/algorithms/softmatch.md)


def test_softmatch_step_matches_reference_torchssl_order():
    algo, _ = make("softmatch", head="spread")
    algo.p_model.copy_(torch.tensor([0.4, 0.3, 0.2, 0.1]))  # state of earlier steps, far from uniform
    algo.p_target.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    algo.mu.fill_(0.8)
    algo.var.fill_(0.05)
    batch = batch_of(algo, 29)
    ref, expected_bn, zx, zw, zs = one_pass(algo, batch)

    loss, metrics = algo.step(batch, 0.5)

    m = 0.999
    q, pl = softmax(zw.detach()), softmax(zx.detach())
    p_model = m * torch.tensor([0.4, 0.3, 0.2, 0.1]) + (1 - m) * q.mean(dim=0)
    p_target = m * torch.tensor([0.1, 0.2, 0.3, 0.4]) + (1 - m) * pl.mean(dim=0)  # EMA of labeled predictions
    conf = q.max(dim=1).values  # the UN-aligned confidence fits the Gaussian
    mu = m * 0.8 + (1 - m) * conf.mean()
    var = m * 0.05 + (1 - m) * conf.var(unbiased=True)
    aligned = q * p_target / p_model
    aligned = aligned / aligned.sum(dim=1, keepdim=True)
    below = torch.clamp(aligned.max(dim=1).values - mu, max=0.0)
    w = torch.exp(-(below**2) / (2 * var / 4))  # n_sigma = 2
    assert (w < 1).any() and (w == 1).any()
    lu = (hard_ce_per_sample(zs, q.argmax(dim=1)) * w).mean()  # hard label of the unaligned prediction
    close(algo.mu, mu)
    close(algo.var, var)
    close(algo.p_target, p_target)
    close(metrics["monitor/weight"], w.mean())
    finish(algo, ref, expected_bn, loss, hard_ce_per_sample(zx, batch.y).mean() + lu)


def test_softmatch_fits_its_gaussian_before_the_alignment():
    """TorchSSL takes μ from the unaligned confidence; USB from the aligned one
    (docs/algorithms/softmatch.md#usb-order): with a skewed alignment the two give different μ, and each variant gives
    its own."""
    mus = {}
    for variant in ("torchssl", "usb"):
        algo, _ = make("softmatch", head="spread", variant=variant, ema_p=0.5)
        algo.p_model.copy_(torch.tensor([0.7, 0.1, 0.1, 0.1]))
        batch = batch_of(algo, 29)
        _, _, zx, zw, _ = one_pass(algo, batch)
        algo.step(batch, 0.5)
        mus[variant] = float(algo.mu)
        q = softmax(zw.detach())
        if variant == "torchssl":
            close(mus[variant], 0.5 / C + 0.5 * q.max(dim=1).values.mean())
        else:  # p_model = the first batch's mean (not an EMA); uniform target; 1e-6 on both
            p_model = q.mean(dim=0)
            close(algo.p_model, p_model)
            aligned = q * (1 / C + 1e-6) / (p_model + 1e-6)
            aligned = aligned / aligned.sum(dim=1, keepdim=True)
            close(mus[variant], 0.5 / C + 0.5 * aligned.max(dim=1).values.mean())
    assert mus["torchssl"] != pytest.approx(mus["usb"], rel=1e-3)


# ------------------------------------------------------------------------------------------------------- Dash
# (docs/algorithms/dash.md)


def dash_reference(zw, zs, rho, hard, T=0.5):
    t = softmax(zw.detach() / T)
    yhat = zw.detach().argmax(dim=1)
    select = (-log_softmax(zw.detach())[torch.arange(len(yhat)), yhat] < max(rho, 0.05)).float()
    per = hard_ce_per_sample(zs, yhat) if hard else -(t * log_softmax(zs)).sum(dim=1)
    n = float(select.sum())
    return select, (0.9 * (per * select).sum() / n if n else torch.zeros(())), -(t * log_softmax(zs)).sum(dim=1)


def test_dash_warmup_selects_everything_and_keeps_the_losses():
    algo, _ = make("dash", head="spread")
    batch = batch_of(algo, 31)
    ref, expected_bn, zx, zw, zs = one_pass(algo, batch)
    progress = 9.5 / 1024  # epoch 9 < 10: the last warm-up epoch

    loss, metrics = algo.step(batch, progress)

    select, lu, per = dash_reference(zw, zs, 500.0, hard=False)
    assert float(select.mean()) == 1.0
    close(metrics["monitor/rho"], 500.0)
    assert int(algo.count) == 56 and int(algo.epoch_kept) == 9
    close(algo.losses, per.detach())  # n_train − n_labeled = 56 entries, all of this step
    finish(algo, ref, expected_bn, loss, hard_ce_per_sample(zx, batch.y).mean() + lu)


@pytest.mark.parametrize("epoch, hard", [(28.5, False), (400.2, True)])
def test_dash_threshold_after_warmup_matches_reference(epoch, hard):
    algo, _ = make("dash", head="spread")
    algo.losses.copy_(torch.linspace(0.5, 1.5, 56))  # ρ̂ = 1.0
    algo.count.fill_(56)
    batch = batch_of(algo, 31)
    ref, expected_bn, zx, zw, zs = one_pass(algo, batch)

    loss, metrics = algo.step(batch, epoch / 1024)

    drops = (math.floor(epoch) - 1) // 9
    rho = 1.0 * 1.27**-drops
    assert (rho <= 0.05) == hard
    select, lu, _ = dash_reference(zw, zs, rho, hard)
    assert 0 < int(select.sum()) < len(select)
    close(metrics["monitor/rho"], rho)
    close(metrics["monitor/hard"], float(hard))
    finish(algo, ref, expected_bn, loss, hard_ce_per_sample(zx, batch.y).mean() + lu)


def test_dash_keeps_only_the_last_warmup_epochs_losses():
    algo, _ = make("dash", warmup_epochs=3)
    for epoch, value in ((0, 5.0), (0, 5.0), (1, 4.0), (2, 1.0), (2, 3.0)):
        algo.keep(torch.full((8,), value), epoch)
    assert int(algo.count) == 16
    close(algo.rho_hat(), 2.0)  # epochs 0 and 1 were cleared; epoch 2 (the last warm-up one) kept: mean of 1 and 3


def test_dash_ring_keeps_the_most_recent_losses():
    algo, _ = make("dash")  # 56 entries
    for value in range(8):  # 8 x 8 = 64 losses in the last warm-up epoch: the 8 oldest are overwritten
        algo.keep(torch.full((8,), float(value)), 9)
    close(algo.rho_hat(), sum(range(1, 8)) / 7)


def test_dash_with_nothing_selected_has_zero_unlabeled_loss():
    algo, _ = make("dash", head="plain")
    algo.count.fill_(56)  # ρ̂ = 0: ρ = max(0, ρ_min) = 0.05, hard labels; the case has no image that confident
    _, metrics = algo.step(batch_of(algo, 31), 20 / 1024)
    assert float(metrics["loss/u"]) == 0.0 and float(metrics["monitor/mask"]) == 0.0


def test_dash_usb_variant_matches_reference():
    algo, _ = make("dash", head="spread", variant="usb")
    batch = batch_of(algo, 31)
    ref, expected_bn, zx, zw, zs = one_pass(algo, batch)
    progress = algo.cfg.usb_warmup + 25 / 1024  # k = floor(25 / 10) = 2

    loss, metrics = algo.step(batch, progress)

    rho = max(1.0001 * 1.27**-2 * math.log(C), 0.05)
    t = softmax(zw.detach() / 0.5)
    select = (-(t * log_softmax(zw.detach())).sum(dim=1) <= rho).float()
    assert 0 < int(select.sum()) < len(select)
    lu = (-(t * log_softmax(zs)).sum(dim=1) * select).mean()  # masked mean over the whole unlabeled batch
    close(metrics["monitor/rho"], rho)
    finish(algo, ref, expected_bn, loss, hard_ce_per_sample(zx, batch.y).mean() + lu)
    algo, _ = make("dash", variant="usb")
    _, warm = algo.step(batch_of(algo, 31), algo.cfg.usb_warmup / 2)
    assert float(warm["loss/u"]) == 0.0  # labeled images only during USB's warm-up
