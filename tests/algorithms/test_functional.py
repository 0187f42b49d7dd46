"""Golden values, worked out by hand, for every shared function of ssl_bench.algorithms.functional.

Each expected number is derived in a comment from the equations of docs/reference/common.md
(docs/reference/common.md#mixup to docs/reference/common.md#distribution-estimates, docs/algorithms/mixmatch.md to
docs/algorithms/adamatch.md, docs/reference/porting.md#first-wave-checklist, Appendix A); none is produced by the code
under test.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from ssl_bench.algorithms.functional import (
    EMAVector,
    FIFOMean,
    align,
    confidence_mask,
    frozen_bn_stats,
    half_cosine_warmup,
    interleave,
    interleave_offsets,
    joint_pass,
    linear_rampup,
    masked_cross_entropy,
    mixup,
    mse_probs,
    relative_threshold,
    sample_mixup,
    sharpen,
    soft_cross_entropy,
)

LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)


def close(actual, expected, atol=1e-6, rtol=1e-5):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=torch.float32),
        torch.as_tensor(expected, dtype=torch.float32),
        atol=atol,
        rtol=rtol,
    )


# ----------------------------------------------------------------------------------------------- sharpen
# (docs/algorithms/mixmatch.md#reference-step, docs/reference/porting.md#first-wave-checklist)


def test_sharpen_golden_values():
    # [0.6, 0.4], T = 0.5: squares 0.36, 0.16, sum 0.52 -> 0.36/0.52 = 0.692308, 0.16/0.52 = 0.307692
    close(sharpen(torch.tensor([[0.6, 0.4]]), 0.5), [[0.36 / 0.52, 0.16 / 0.52]])
    # [0.7, 0.2, 0.1], T = 0.5: 0.49, 0.04, 0.01, sum 0.54 -> 0.907407, 0.074074, 0.018519
    close(sharpen(torch.tensor([[0.7, 0.2, 0.1]]), 0.5), [[0.907407, 0.074074, 0.018519]])
    # T = 0.25 (power 4): 0.6^4 = 0.1296, 0.4^4 = 0.0256, sum 0.1552 -> 0.835052, 0.164948
    close(sharpen(torch.tensor([[0.6, 0.4]]), 0.25), [[0.835052, 0.164948]])
    # uniform rows are a fixed point; T = 1 is the identity on a distribution
    close(sharpen(torch.tensor([[0.5, 0.5]]), 0.5), [[0.5, 0.5]])
    close(sharpen(torch.tensor([[0.7, 0.2, 0.1]]), 1.0), [[0.7, 0.2, 0.1]])


def test_sharpen_is_a_power_on_probabilities_not_a_softmax_temperature():
    # softmax([0.6, 0.4] / 0.5) = softmax([1.2, 0.8]) = [0.598688, 0.401312] - the wrong reading
    # (docs/reference/porting.md#first-wave-checklist item 9)
    out = sharpen(torch.tensor([[0.6, 0.4]]), 0.5)
    assert abs(out[0, 0].item() - 0.598688) > 0.05
    close(out.sum(1), [1.0])


# ------------------------------------------------------------------------------------------------ soft_cross_entropy


def test_soft_cross_entropy_golden_value():
    # row 0: logits [0, ln 3] -> softmax [1/4, 3/4]; target [1/2, 1/2]: -(0.5 ln 0.25 + 0.5 ln 0.75) = 0.836988
    # row 1: logits [0, 0] -> softmax [1/2, 1/2]; target [1, 0]: -ln 0.5 = 0.693147
    # mean over the batch: (0.836988 + 0.693147) / 2 = 0.765068
    logits = torch.tensor([[0.0, LN3], [0.0, 0.0]])
    targets = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    close(soft_cross_entropy(logits, targets), 0.765068)
    # invariant to adding a constant per row to the logits
    close(soft_cross_entropy(logits + torch.tensor([[5.0], [-3.0]]), targets), 0.765068)


def test_soft_cross_entropy_one_hot_matches_hard_labels():
    # one-hot target on class 1 of logits [ln 3, 0]: softmax [3/4, 1/4] -> -ln(1/4) = ln 4 = 1.386294
    close(soft_cross_entropy(torch.tensor([[LN3, 0.0]]), torch.tensor([[0.0, 1.0]])), LN4)


# ------------------------------------------------------------------------------------------------------- mixup
# (docs/reference/common.md#mixup)


def test_mixup_golden_values_same_lambda_for_inputs_and_targets():
    # x_i are constant images 1, 10, 100 of shape (1, 1, 2); y one-hot of classes 0, 1, 2
    x = torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1).expand(3, 1, 1, 2).clone()
    y = torch.eye(3)
    lam = torch.tensor([0.8, 0.6, 0.5])
    perm = torch.tensor([2, 0, 1])
    mx, my = mixup(x, y, lam, perm)
    # item 0: 0.8*1 + 0.2*100 = 20.8 ; item 1: 0.6*10 + 0.4*1 = 6.4 ; item 2: 0.5*100 + 0.5*10 = 55
    close(mx, torch.tensor([20.8, 6.4, 55.0]).view(3, 1, 1, 1).expand(3, 1, 1, 2))
    # targets with the same λ: 0.8*e0 + 0.2*e2 ; 0.6*e1 + 0.4*e0 ; 0.5*e2 + 0.5*e1
    close(my, [[0.8, 0.0, 0.2], [0.4, 0.6, 0.0], [0.0, 0.5, 0.5]])
    # inputs untouched
    assert x[0, 0, 0, 0].item() == 1.0


def test_mixup_uses_per_sample_lambda_not_a_shared_one():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mx, my = mixup(x, y, torch.tensor([1.0, 0.5]), torch.tensor([1, 0]))
    # item 0: λ = 1 keeps itself (0); item 1: 0.5*1 + 0.5*0 = 0.5
    close(mx, [[0.0], [0.5]])
    close(my, [[1.0, 0.0], [0.5, 0.5]])


@pytest.mark.parametrize(
    "alpha, mean, var",
    [
        # λ' = max(λ, 1 - λ) = 1/2 + |λ - 1/2| for λ ~ Beta(a, a).
        # Since d/dx[x^a (1-x)^a] = -2a (x - 1/2) x^(a-1) (1-x)^(a-1),
        # E|λ - 1/2| = 2 ∫_{1/2}^1 (x - 1/2) f(x) dx = 2 (4^-a / 2a) / B(a, a) = 4^-a / (a B(a, a)).
        # (check a = 1, uniform: 1/4 -> E λ' = 3/4)
        # a = 0.75: B(.75, .75) = Γ(.75)^2 / Γ(1.5) = 1.694426; 4^-.75 = 0.353553 -> 0.278209 -> E λ' = 0.778209;
        #           Var λ' = Var λ - 0.278209^2 = 1 / (4 (2a + 1)) - 0.077400 = 0.1 - 0.077400 = 0.022600
        (0.75, 0.778209, 0.022600),
        # a = 0.25: B(.25, .25) = Γ(.25)^2 / Γ(.5) = 7.416299; 4^-.25 = 0.707107 -> 0.381380 -> E λ' = 0.881380;
        #           Var λ' = 1 / 6 - 0.145451 = 0.021216
        (0.25, 0.881380, 0.021216),
    ],
)
def test_sample_mixup_distribution(alpha, mean, var):
    torch.manual_seed(0)
    n = 20000
    lam, perm = sample_mixup(n, alpha, torch.device("cpu"))
    assert lam.shape == (n,) and perm.shape == (n,)
    assert (lam >= 0.5).all() and (lam <= 1.0).all()
    assert torch.equal(perm.sort().values, torch.arange(n))  # a permutation
    assert not torch.equal(perm, torch.arange(n))  # and a random one
    se = math.sqrt(var / n)  # ~0.001
    assert abs(lam.mean().item() - mean) < 5 * se, (lam.mean().item(), mean)
    assert len(torch.unique(lam)) > n // 2  # per-sample, not one λ for the batch


def test_sample_mixup_reproducible_from_global_generator():
    torch.manual_seed(3)
    a = sample_mixup(16, 0.75, torch.device("cpu"))
    torch.manual_seed(3)
    b = sample_mixup(16, 0.75, torch.device("cpu"))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# -------------------------------------------------------------------------------------------- interleave
# (docs/reference/common.md#interleave-and-batchnorm, A.1)


@pytest.mark.parametrize(
    "batch, groups, expected",
    [
        (64, 3, [0, 21, 42, 64]),  # 64 // 3 = 21, remainder 1 to the last group: sizes 21, 21, 22
        (10, 4, [0, 2, 4, 7, 10]),  # 10 // 4 = 2, remainder 2 to the last two groups: sizes 2, 2, 3, 3
        (8, 4, [0, 2, 4, 6, 8]),  # divides evenly
        (7, 3, [0, 2, 4, 7]),  # sizes 2, 2, 3
        (2, 3, [0, 0, 1, 2]),  # sizes 0, 1, 1
        (64, 10, [0, 6, 12, 18, 24, 30, 36, 43, 50, 57, 64]),  # 64 = 6*10 + 4: the last four groups hold 7
    ],
)
def test_interleave_offsets(batch, groups, expected):
    assert interleave_offsets(batch, groups) == expected


def _tagged(groups: int, batch: int) -> list[torch.Tensor]:
    # element j of batch g carries the value 100 g + j (shape (B, 2) to check the trailing dimensions too)
    return [torch.stack([torch.full((2,), 100.0 * g + j) for j in range(batch)]) for g in range(groups)]


def test_interleave_golden_two_groups():
    a, b = torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([10.0, 11.0, 12.0, 13.0])
    # offsets [0, 2, 4]: chunk 1 of batch 0 (a2, a3) swaps with chunk 1 of batch 1 (b2, b3)
    out = interleave([a, b], 4)
    assert out[0].tolist() == [0.0, 1.0, 12.0, 13.0]
    assert out[1].tolist() == [10.0, 11.0, 2.0, 3.0]


def test_interleave_golden_three_groups_with_remainder():
    batches = [torch.arange(7.0) + 100 * g for g in range(3)]
    # offsets [0, 2, 4, 7]: pass 0 = a0 a1 | b2 b3 | c4 c5 c6 ; pass 1 = b0 b1 | a2 a3 | b4 b5 b6 ;
    # pass 2 = c0 c1 | c2 c3 | a4 a5 a6
    out = interleave(batches, 7)
    assert out[0].tolist() == [0, 1, 102, 103, 204, 205, 206]
    assert out[1].tolist() == [100, 101, 2, 3, 104, 105, 106]
    assert out[2].tolist() == [200, 201, 202, 203, 4, 5, 6]


@pytest.mark.parametrize("batch, groups", [(10, 3), (10, 4), (8, 4), (64, 3), (7, 2)])
def test_interleave_is_an_involution_and_spreads_batch_zero(batch, groups):
    batches = _tagged(groups, batch)
    out = interleave(batches, batch)
    assert [t.shape for t in out] == [t.shape for t in batches]
    back = interleave(out, batch)
    for a, b in zip(back, batches, strict=True):
        assert torch.equal(a, b)
    off = interleave_offsets(batch, groups)
    for i, t in enumerate(out):
        from_zero = (t[:, 0] < 100).nonzero().flatten()
        # exactly one chunk of batch 0 - chunk i - sitting at chunk i's positions
        assert from_zero.tolist() == list(range(off[i], off[i + 1]))
        assert t[from_zero, 0].tolist() == [float(j) for j in range(off[i], off[i + 1])]
        # every other element of pass i (i > 0) comes from batch i; pass 0 takes chunk g from batch g
        rest = [j for j in range(batch) if j not in from_zero.tolist()]
        for j in rest:
            src = int(t[j, 0].item()) // 100
            assert src == (i if i > 0 else next(g for g in range(groups) if off[g] <= j < off[g + 1]))
    # the multiset of all elements is preserved
    assert sorted(torch.cat(out)[:, 0].tolist()) == sorted(torch.cat(batches)[:, 0].tolist())


def test_interleave_keeps_gradients():
    xs = [torch.randn(6, 3, requires_grad=True) for _ in range(3)]
    out = interleave(xs, 6)
    (out[0].sum() * 2 + out[1].sum() * 3).backward()
    # offsets [0, 2, 4, 6]: batch 0 rows 0-1 -> pass 0 (x2), rows 2-3 -> pass 1 (x3), rows 4-5 -> pass 2 (x0)
    assert xs[0].grad[:, 0].tolist() == [2.0, 2.0, 3.0, 3.0, 0.0, 0.0]
    # batch 2: rows 0-3 stay in pass 2 (x0), rows 4-5 go to pass 0 (x2)
    assert xs[2].grad[:, 0].tolist() == [0.0, 0.0, 0.0, 0.0, 2.0, 2.0]


# ------------------------------------------------------------------------------------ masks and thresholds
# (docs/algorithms/fixmatch.md, docs/algorithms/adamatch.md)


def test_confidence_mask_golden():
    probs = torch.tensor([[0.1, 0.9], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels, mask = confidence_mask(probs, 0.7)
    # argmax: 1, 0, 1, 1 ; max: 0.9, 0.6, 0.7, 0.8 -> >= 0.7: 1, 0, 1 (the boundary counts), 1
    assert labels.tolist() == [1, 0, 1, 1]
    assert mask.dtype == torch.float32
    assert mask.tolist() == [1.0, 0.0, 1.0, 1.0]
    # FixMatch's τ = 0.95: only 0.96 passes
    labels, mask = confidence_mask(torch.tensor([[0.96, 0.04], [0.05, 0.94]]), 0.95)
    assert labels.tolist() == [0, 1] and mask.tolist() == [1.0, 0.0]
    # a tensor threshold (AdaMatch's relative c_τ) works the same way
    _, mask = confidence_mask(probs, torch.tensor(0.75))
    assert mask.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_relative_threshold_golden():
    # max rows 0.9 and 0.6, mean 0.75; τ = 0.9 -> 0.675
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
    close(relative_threshold(probs, 0.9), 0.675)
    # three classes: max 0.5, 0.8, 0.5 -> mean 0.6; τ = 0.5 -> 0.3
    close(relative_threshold(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5]]), 0.5), 0.3)


def test_masked_cross_entropy_divides_by_full_batch():
    # CE: row 0 logits [0, 0] label 0 -> ln 2 = 0.693147 (mask 1)
    #     row 1 logits [ln 3, 0] label 1 -> softmax [3/4, 1/4] -> ln 4 = 1.386294 (mask 0)
    #     row 2 logits [ln 3, 0] label 0 -> -ln(3/4) = 0.287682 (mask 1)
    # sum over masked = 0.980829; / 3 (full batch) = 0.326943   (÷ 2 masked samples would be 0.490415)
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0], [LN3, 0.0]])
    labels = torch.tensor([0, 1, 0])
    mask = torch.tensor([1.0, 0.0, 1.0])
    close(masked_cross_entropy(logits, labels, mask), (LN2 - math.log(0.75)) / 3)
    close(masked_cross_entropy(logits, labels, torch.zeros(3)), 0.0)
    close(masked_cross_entropy(logits, labels, torch.ones(3)), (LN2 + LN4 - math.log(0.75)) / 3)


# -------------------------------------------------------------------------------- distribution alignment
# (docs/algorithms/remixmatch.md#reference-step, docs/algorithms/adamatch.md#reference-step)


def test_align_golden():
    # p = [0.2, 0.3, 0.5], p_target = [0.5, 0.25, 0.25], p_model = [0.25, 0.25, 0.5]
    # ratio ≈ [2, 1, 0.5] -> [0.4, 0.3, 0.25], sum 0.95 -> [0.421053, 0.315789, 0.263158] (the 1e-6 terms move
    # the ratios by ~4e-6 relative)
    p = torch.tensor([[0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    out = align(p, torch.tensor([0.5, 0.25, 0.25]), torch.tensor([0.25, 0.25, 0.5]))
    # row 1: uniform * [2, 1, 0.5] -> [2/3.5, 1/3.5, 0.5/3.5] = [0.571429, 0.285714, 0.142857]
    close(out, [[0.421053, 0.315789, 0.263158], [0.571429, 0.285714, 0.142857]], atol=2e-6)
    close(out.sum(1), [1.0, 1.0])


def test_align_epsilon_keeps_a_zero_estimate_finite():
    # p_model = [0, 1]: ratios (0.5 + 1e-6) / 1e-6 = 500001 and (0.5 + 1e-6) / (1 + 1e-6) ≈ 0.5
    # q ∝ [0.5 * 500001, 0.5 * 0.5] -> q_1 = 0.25 / (250000.5 + 0.25) ≈ 1.0e-6
    out = align(torch.tensor([[0.5, 0.5]]), torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0]))
    assert torch.isfinite(out).all()
    close(out, [[1.0 - 1.0e-6, 1.0e-6]], atol=1e-7, rtol=1e-3)


def test_align_with_equal_estimates_is_identity():
    p = torch.tensor([[0.2, 0.3, 0.5]])
    est = torch.tensor([0.1, 0.6, 0.3])
    close(align(p, est, est), p)


# ---------------------------------------------------------------------------------------------------- ramps
# (docs/algorithms/mixmatch.md, docs/algorithms/adamatch.md)


@pytest.mark.parametrize(
    "progress, length, expected",
    [
        (0.0, 0.5, 0.0),
        (0.25, 0.5, 0.5),
        (0.5, 0.5, 1.0),
        (0.9, 0.5, 1.0),  # clipped at 1
        (-0.1, 0.5, 0.0),  # clipped at 0
        (1 / 128, 1 / 64, 0.5),  # MixMatch: half of 16,384 steps
        (0.005, 1 / 64, 0.32),  # 0.005 * 64
        (0.3, 0.0, 1.0),  # no ramp
    ],
)
def test_linear_rampup(progress, length, expected):
    assert linear_rampup(progress, length) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "progress, expected",
    [
        (0.0, 0.0),  # 1/2 - 1/2 cos 0 = 0
        (0.125, 0.5 - 0.5 * math.sqrt(0.5)),  # 1/2 - 1/2 cos(π/4) = 0.146447
        (0.25, 0.5),  # 1/2 - 1/2 cos(π/2) = 0.5
        (0.375, 0.5 + 0.5 * math.sqrt(0.5)),  # 1/2 - 1/2 cos(3π/4) = 0.853553
        (0.5, 1.0),  # 1/2 - 1/2 cos π = 1
        (0.75, 1.0),
        (0.999, 1.0),
    ],
)
def test_half_cosine_warmup(progress, expected):
    # AdaMatch μ(t) = 1/2 - 1/2 cos(2π t) for t <= 0.5, then 1
    assert half_cosine_warmup(progress) == pytest.approx(expected, abs=1e-12)


def test_half_cosine_warmup_custom_length():
    # length 0.2: 1/2 - 1/2 cos(π · 0.1 / 0.2) = 0.5 ; full at 0.2
    assert half_cosine_warmup(0.1, 0.2) == pytest.approx(0.5)
    assert half_cosine_warmup(0.2, 0.2) == pytest.approx(1.0)
    assert half_cosine_warmup(0.05, 0.2) == pytest.approx(0.5 - 0.5 * math.sqrt(0.5))


# ---------------------------------------------------------------------------------------- FIFOMean, EMAVector
# (docs/reference/common.md#distribution-estimates)


def test_fifo_mean_uniform_init_and_wrap_around():
    f = FIFOMean(3, size=2)
    close(f.value(), [1 / 3, 1 / 3, 1 / 3])
    f.push(torch.tensor([1.0, 0.0, 0.0]))
    # rows [1, 0, 0], [1/3, 1/3, 1/3] -> mean [2/3, 1/6, 1/6]
    close(f.value(), [2 / 3, 1 / 6, 1 / 6])
    f.push(torch.tensor([0.0, 1.0, 0.0]))
    # rows [1, 0, 0], [0, 1, 0] -> [1/2, 1/2, 0]
    close(f.value(), [0.5, 0.5, 0.0])
    f.push(torch.tensor([0.0, 0.0, 1.0]))
    # FIFO: the third push replaces the oldest row [1, 0, 0] -> rows [0, 0, 1], [0, 1, 0] -> [0, 1/2, 1/2]
    close(f.value(), [0.0, 0.5, 0.5])
    f.push(torch.tensor([0.0, 0.0, 1.0]))
    # now replaces [0, 1, 0] -> rows [0, 0, 1], [0, 0, 1]
    close(f.value(), [0.0, 0.0, 1.0])
    assert int(f.pos) == 0


def test_fifo_mean_value_is_normalised_and_state_is_buffers():
    f = FIFOMean(3, size=2)
    f.push(torch.tensor([2.0, 0.0, 0.0]))
    f.push(torch.tensor([0.0, 0.0, 1.0]))
    # rows [2, 0, 0], [0, 0, 1] -> mean [1, 0, 0.5], sum 1.5 -> [2/3, 0, 1/3]
    close(f.value(), [2 / 3, 0.0, 1 / 3])
    assert set(f.state_dict()) == {"rows", "pos"}
    g = torch.tensor([0.2, 0.3, 0.5], requires_grad=True)
    f.push(g * 1.0)
    assert not f.rows.requires_grad  # pushed detached


def test_fifo_mean_default_size_128():
    f = FIFOMean(4)
    assert f.rows.shape == (128, 4)
    f.push(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    # one row of 128 replaced: class 0 = (1 + 127/4) / 128 = 0.255859, others (127/4) / 128 = 0.248047
    close(f.value(), [(1 + 127 / 4) / 128] + [127 / 4 / 128] * 3)


def test_ema_vector_golden():
    e = EMAVector(2, decay=0.9)
    close(e.value(), [0.5, 0.5])
    out = e.update(torch.tensor([1.0, 0.0]))
    # 0.9 * [0.5, 0.5] + 0.1 * [1, 0] = [0.55, 0.45]
    close(out, [0.55, 0.45])
    close(e.value(), [0.55, 0.45])
    e.update(torch.tensor([1.0, 0.0]))
    # 0.9 * [0.55, 0.45] + 0.1 * [1, 0] = [0.595, 0.405]
    close(e.value(), [0.595, 0.405])
    assert list(e.state_dict()) == ["p"]


def test_ema_vector_default_decay():
    e = EMAVector(4)
    e.update(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    # 0.999 * 0.25 + 0.001 = 0.25075 ; 0.999 * 0.25 = 0.24975
    close(e.value(), [0.25075, 0.24975, 0.24975, 0.24975], atol=1e-7)


# ----------------------------------------------------------------------------------------- frozen_bn_stats
# (docs/reference/common.md#interleave-and-batchnorm, A.2)


def test_bn_running_stat_golden_update():
    # the regime the algorithms rely on: one train-mode pass over [1, 2, 3, 4] with momentum 0.1
    # batch mean 2.5, unbiased var ((1.5^2 + 0.5^2) * 2) / 3 = 5/3
    # running_mean = 0.9 * 0 + 0.1 * 2.5 = 0.25 ; running_var = 0.9 * 1 + 0.1 * 5/3 = 1.066667
    bn = nn.BatchNorm2d(1, momentum=0.1)
    bn(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1))
    close(bn.running_mean, [0.25])
    close(bn.running_var, [0.9 + 0.1 * 5 / 3])
    with frozen_bn_stats(bn):
        out = bn(torch.tensor([10.0, 20.0, 30.0, 40.0]).view(4, 1, 1, 1))
    # unchanged by the frozen pass, which still normalises with its batch statistics: (10 - 25) / sqrt(125 + 1e-5)
    close(bn.running_mean, [0.25])
    close(bn.running_var, [0.9 + 0.1 * 5 / 3])
    close(out.flatten()[0], -15.0 / math.sqrt(125.0 + 1e-5))


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4, momentum=0.1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4, momentum=None),  # cumulative average: reads num_batches_tracked
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    ).train()


def _bn_state(model: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for name, b in model.named_buffers()]


def test_frozen_bn_stats_leaves_running_stats_and_counts_untouched():
    model = _net()
    model(torch.randn(5, 3, 4, 4))  # non-trivial starting statistics
    before = _bn_state(model)
    x = torch.randn(6, 3, 4, 4)
    with frozen_bn_stats(model):
        out = model(x)
        model(torch.randn(6, 3, 4, 4) * 3 + 1)
    after = _bn_state(model)
    assert len(before) == 6  # mean, var, count for each BN
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b)
    # training-mode batch statistics inside: same output as an unfrozen copy in train mode
    ref = copy.deepcopy(model)
    torch.testing.assert_close(out, ref(x))
    # ... and not the eval-mode (running statistics) output
    assert not torch.allclose(out, ref.eval()(x), atol=1e-3)


def test_frozen_bn_stats_gradients_flow():
    model = _net()
    with frozen_bn_stats(model):
        loss = model(torch.randn(6, 3, 4, 4)).pow(2).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pass_outside_updates_running_stats():
    model = _net()
    before = _bn_state(model)
    with frozen_bn_stats(model):
        model(torch.randn(6, 3, 4, 4))
    x = torch.randn(6, 3, 4, 4)
    model(x)
    bn = model[1]
    # running_mean = 0.9 * 0 + 0.1 * (mean over N, H, W of the first conv's output per channel)
    expected = 0.1 * model[0](x).mean(dim=(0, 2, 3))
    close(bn.running_mean, expected)
    assert int(bn.num_batches_tracked) == 1 and int(model[4].num_batches_tracked) == 1
    after = _bn_state(model)
    assert not torch.equal(before[0], after[0])


def test_frozen_bn_stats_restores_after_an_exception():
    model = _net()
    before = _bn_state(model)
    with pytest.raises(ValueError), frozen_bn_stats(model):
        model(torch.randn(6, 3, 4, 4))
        raise ValueError
    for a, b in zip(before, _bn_state(model), strict=True):
        assert torch.equal(a, b)


def test_frozen_bn_stats_does_not_modify_saved_tensors_in_place():
    """A backward through a pass made BEFORE the context runs after it exits (MixMatch's pass 0 then frozen passes;
    AdaMatch's frozen pass then the joint pass): restoring the statistics with an in-place copy_ would raise
    'modified by an inplace operation' because batch_norm saves running_mean/var for its backward."""
    model = _net()
    out_before = model(torch.randn(6, 3, 4, 4))  # updates and saves the live running stats
    with frozen_bn_stats(model):
        out_inside = model(torch.randn(6, 3, 4, 4))
    out_after = model(torch.randn(6, 3, 4, 4))
    (out_before.sum() + out_inside.sum() + out_after.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    # the kept statistics are those of the two outside passes: two updates counted
    assert int(model[1].num_batches_tracked) == 2


def test_nested_frozen_contexts():
    model = _net()
    before = _bn_state(model)
    with frozen_bn_stats(model):
        model(torch.randn(6, 3, 4, 4))
        with frozen_bn_stats(model):
            model(torch.randn(6, 3, 4, 4))
        model(torch.randn(6, 3, 4, 4))
    for a, b in zip(before, _bn_state(model), strict=True):
        assert torch.equal(a, b)


def test_mse_probs_golden():
    # row 1: softmax(0, 0) = (1/2, 1/2) vs softmax(ln 3, 0) = (3/4, 1/4): squared differences 1/16 and 1/16;
    # row 2: equal logits, 0. Mean over 2 rows x 2 classes = (1/16 + 1/16) / 4 = 1/32
    a = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    b = torch.tensor([[LN3, 0.0], [1.0, 2.0]])
    close(mse_probs(a, b), 1 / 32)
    close(mse_probs(b, a), 1 / 32)


def test_joint_pass_is_one_call_over_all_groups_split_back():
    calls = []

    class Recorder(nn.Module):
        def forward(self, x):
            calls.append(len(x))
            return x * 2

    groups = (torch.arange(2.0), torch.arange(10.0, 13.0), torch.tensor([7.0]))
    out = joint_pass(Recorder(), *groups)
    assert calls == [6]  # one pass: BatchNorm would see all six images together
    assert [o.tolist() for o in out] == [[0.0, 2.0], [20.0, 22.0, 24.0], [14.0]]
