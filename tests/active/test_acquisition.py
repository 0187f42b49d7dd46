"""Acquisition scores and the shared selector on hand-made probability tables (MMA, reference
docs/algorithms/mma.md#acquisition)."""

import numpy as np
import pytest

from ssl_bench.active.acquisition import (
    Acquisition,
    confidence,
    cosine_distance_mean,
    kmeans_quota,
    select,
    uncertainty,
)
from ssl_bench.errors import ConfigError

P = np.array(
    [
        [0.90, 0.05, 0.05],  # 0: confident
        [0.40, 0.35, 0.25],  # 1: low max, small margin
        [0.50, 0.50, 0.00],  # 2: zero margin, entropy ln 2
        [1 / 3, 1 / 3, 1 / 3],  # 3: uniform: lowest max, zero std, highest entropy
        [0.60, 0.10, 0.30],  # 4
    ]
)


# per row, by hand: population std over the 3 classes (mean 1/3) and the entropy H = -sum p ln p
STD = [
    np.sqrt(289 / 1800),  # row 0: deviations 17/30, -17/60, -17/60 -> (289/900 + 2 * 289/3600) / 3
    np.sqrt(7 / 1800),  # row 1: 1/15, 1/60, -1/12 -> (1/225 + 1/3600 + 1/144) / 3
    np.sqrt(1 / 18),  # row 2: 1/6, 1/6, -1/3 -> (1/36 + 1/36 + 1/9) / 3
    0.0,
    np.sqrt(19 / 450),  # row 4: 4/15, -7/30, -1/30 -> (16/225 + 49/900 + 1/900) / 3
]
ENTROPY = [
    -(0.9 * np.log(0.9) + 0.1 * np.log(0.05)),  # 0.394398
    -(0.4 * np.log(0.4) + 0.35 * np.log(0.35) + 0.25 * np.log(0.25)),  # 1.080528
    np.log(2),
    np.log(3),
    -(0.6 * np.log(0.6) + 0.1 * np.log(0.1) + 0.3 * np.log(0.3)),  # 0.897946
]


def test_scores_by_hand():
    np.testing.assert_allclose(confidence(P, "max"), [0.9, 0.4, 0.5, 1 / 3, 0.6])
    np.testing.assert_allclose(confidence(P, "diff2"), [0.85, 0.05, 0.0, 0.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(STD, [0.400694, 0.062361, 0.235702, 0.0, 0.205480], atol=1e-6)  # the sums above
    np.testing.assert_allclose(confidence(P, "std"), STD, atol=1e-12)
    np.testing.assert_allclose(confidence(P, "entropy"), np.negative(ENTROPY), atol=1e-12)  # -H: lower = less sure
    # id weights: 1 - max, 1 - margin, and H itself for entropy (docs/algorithms/mma.md#acquisition)
    np.testing.assert_allclose(uncertainty(P, "max"), [0.1, 0.6, 0.5, 2 / 3, 0.4], atol=1e-12)
    np.testing.assert_allclose(uncertainty(P, "diff2"), [0.15, 0.95, 1.0, 1.0, 0.7], atol=1e-12)
    np.testing.assert_allclose(uncertainty(P, "entropy"), [0.394398, 1.080528, 0.693147, 1.098612, 0.897946], atol=1e-6)


@pytest.mark.parametrize(
    "name,expect",
    [
        ("max-direct", [1, 3]),  # the two lowest max-probabilities: 1/3 (row 3) and 0.4 (row 1)
        ("diff2-direct", [2, 3]),  # the two zero margins (ties kept in index order)
        ("entropy-direct", [1, 3]),  # highest entropies: ln 3 (row 3) and 1.08 (row 1) above ln 2 (row 2)
        ("std-direct", [1, 3]),  # lowest spread over classes
    ],
)
def test_direct_selection(name, expect):
    got = select(Acquisition.parse(name), 2, P, None, np.random.default_rng(0))
    assert got.tolist() == expect


def test_information_density_weights_uncertainty_by_distance():
    feats = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # mean cosine distance: four aligned rows see 1 distant row -> 1/5; row 3 sees 4 -> 4/5
    np.testing.assert_allclose(cosine_distance_mean(feats), [0.2, 0.2, 0.2, 0.8, 0.2])
    # max-id scores (1 - max) * dist = [0.02, 0.12, 0.10, 0.533, 0.08] -> rows 3 then 1
    got = select(Acquisition.parse("max-id"), 2, P, feats, np.random.default_rng(0))
    assert got.tolist() == [1, 3]


@pytest.mark.parametrize(
    "sizes,k,expect",
    [
        # np.rint, half to even: 5 * [.6, .3, .1] = [3, 1.5, 0.5] -> [3, 2, 0] (floor would give [3, 1, 0] + 1)
        ([6, 3, 1], 5, [3, 2, 0]),
        ([6, 3, 1], 10, [6, 3, 1]),
        # 2 * [1/3] * 3 rounds to [1, 1, 1], one too many: the largest quota (the first of equals) gives one back
        ([3, 3, 3], 2, [0, 1, 1]),
        # 5 * [.3, .3, .3, .1] = [1.5, 1.5, 1.5, 0.5] -> [2, 2, 2, 0], one too many -> [1, 2, 2, 0]
        ([3, 3, 3, 1], 5, [1, 2, 2, 0]),
        ([2, 2, 6], 5, [1, 1, 3]),
    ],
)
def test_kmeans_quota_rounds_half_to_even_and_fixes_up_the_sum(sizes, k, expect):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    assert kmeans_quota(labels, len(sizes), k, np.random.default_rng(0)).tolist() == expect


def test_kmeans_quota_adds_a_missing_label_to_a_cluster_with_room():
    # 5 * [.1, .1, .8] = [0.5, 0.5, 4] -> [0, 0, 4]: one short, added to one cluster at random (all have room)
    labels = np.repeat(np.arange(3), [1, 1, 8])
    got = {tuple(kmeans_quota(labels, 3, 5, np.random.default_rng(seed)).tolist()) for seed in range(40)}
    assert got == {(1, 0, 4), (0, 1, 4), (0, 0, 5)}


def test_kmeanprop_takes_least_confident_per_cluster():
    rng = np.random.default_rng(0)
    # two well-separated clusters of 10; in each, confidence rises with the index
    feats = np.concatenate([rng.normal(0, 0.01, (10, 2)) + [5, 0], rng.normal(0, 0.01, (10, 2)) + [0, 5]])
    conf = np.concatenate([np.linspace(0.5, 0.95, 10), np.linspace(0.5, 0.95, 10)])  # max p = conf
    probs = np.stack([conf, 1 - conf], axis=1)
    got = select(Acquisition.parse("max-kmeanprop"), 4, probs, feats, rng, n_clusters=2)
    assert sorted(got.tolist()) == [0, 1, 10, 11]


def test_random_is_seeded_without_replacement():
    a = select(Acquisition.parse("random"), 5, np.zeros((50, 1)), None, np.random.default_rng(3))
    b = select(Acquisition.parse("random"), 5, np.zeros((50, 1)), None, np.random.default_rng(3))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 5


def test_grammar():
    acq = Acquisition.parse("diff2.aug-kmeanprop-embd")
    assert (acq.measure, acq.aug, acq.diversification, acq.embedding) == ("diff2", True, "kmeanprop", True)
    for bad, msg in [
        ("nope", "invalid acquisition"),
        ("foo-direct", "unknown acquisition measure 'foo'"),
        ("max-spread", "unknown diversification 'spread'"),
        ("std-id", "std cannot be combined with id"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            Acquisition.parse(bad)
    with pytest.raises(ConfigError, match="cannot select 9 images from a pool of 5"):
        select(Acquisition.parse("max-direct"), 9, P, None, np.random.default_rng(0))
