"""Acquisition scores and the shared selector on hand-made probability tables (MMA, reference §7.4)."""

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


def test_scores_by_hand():
    np.testing.assert_allclose(confidence(P, "max"), [0.9, 0.4, 0.5, 1 / 3, 0.6])
    np.testing.assert_allclose(confidence(P, "diff2"), [0.85, 0.05, 0.0, 0.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(confidence(P, "std"), P.std(axis=1))
    assert confidence(P, "std")[3] == pytest.approx(0.0, abs=1e-12)
    # -H: row 2 = 2 * 0.5 ln 0.5 = -ln 2; row 3 = -ln 3
    ent = confidence(P, "entropy")
    assert ent[2] == pytest.approx(-np.log(2)) and ent[3] == pytest.approx(-np.log(3))
    np.testing.assert_allclose(uncertainty(P, "max"), 1 - confidence(P, "max"))
    np.testing.assert_allclose(uncertainty(P, "entropy"), -ent)


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


def test_kmeans_quota_sums_and_respects_cluster_sizes():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    q = kmeans_quota(labels, 3, 5, np.random.default_rng(0))
    assert q.sum() == 5 and (q <= np.bincount(labels)).all()
    assert q.tolist() == [3, 2, 0] or q.tolist() == [3, 1, 1]  # round(5 * [.6, .3, .1]) = [3, 2, 0]
    assert kmeans_quota(labels, 3, 10, np.random.default_rng(0)).tolist() == [6, 3, 1]


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
