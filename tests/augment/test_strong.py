"""Policy-level tests of RandAugment and CTAugment: spec frequencies, seeded determinism, per-sample variety,
CTAugment's update rule against a sequential reference, threshold, and state round-trip."""

import numpy as np
import pytest
import torch

from ssl_bench.augment.policies import create_policy
from ssl_bench.augment.strong import CTA_OPS, RA_OPS, CTAugment, CTRecord, RandAugment
from ssl_bench.config import AugmentConfig
from ssl_bench.errors import ConfigError


def images(n=64, size=32, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)


def test_randaugment_op_frequencies_match_spec():
    ra = RandAugment()
    n = 40000
    ids, params = ra.sample(n, 32, 32, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert ids.shape == (n, 3) and params.shape == (n, 3, 3)
    assert (ids[:, 2] == len(RA_OPS)).all()  # the last slot is always cutout
    assert (params[:, 2, 0] == 16).all()  # 16 px at 32 px
    counts = torch.bincount(ids[:, :2].flatten(), minlength=len(RA_OPS)).float() / (2 * n)
    # each slot: identity with p = 0.5 (not applied) + 0.5/14; every other op 0.5/14; 3-sigma bounds
    expect = torch.full((len(RA_OPS),), 0.5 / 14)
    expect[0] += 0.5
    sigma = (expect * (1 - expect) / (2 * n)).sqrt()
    assert ((counts - expect).abs() < 4 * sigma).all(), (counts, expect)


def test_randaugment_magnitudes_follow_levels():
    ra = RandAugment()
    ids, params = ra.sample(20000, 32, 32, torch.Generator().manual_seed(1), torch.device("cpu"))
    p0 = params[:, :2, 0]
    rot = p0[ids[:, :2] == RA_OPS.index("rotate")]
    assert set(rot.abs().unique().tolist()) == {3.0 * lvl for lvl in range(1, 10)}
    assert (rot < 0).any() and (rot > 0).any()
    post = p0[ids[:, :2] == RA_OPS.index("posterize")]
    assert set(post.unique().tolist()) == {4.0, 3.0, 2.0, 1.0}
    sol = p0[ids[:, :2] == RA_OPS.index("solarize")]
    assert set(sol.unique().tolist()) == {256.0 - int(25.6 * lvl) for lvl in range(1, 10)}
    bright = p0[ids[:, :2] == RA_OPS.index("brightness")]
    assert bright.min() == pytest.approx(0.28) and bright.max() == pytest.approx(1.72)
    trans = p0[ids[:, :2] == RA_OPS.index("translate_x")]
    assert set(trans.abs().unique().tolist()) == set(map(float, range(1, 10)))  # pixels


@pytest.mark.parametrize("name", ["weak", "randaugment", "ctaugment"])
def test_policies_seeded_and_varied(name):
    pol = create_policy(name, AugmentConfig(), hflip=True)
    x = images(64)
    a = pol(x, torch.Generator().manual_seed(3))
    b = create_policy(name, AugmentConfig(), hflip=True)(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == x.shape
    c = pol(x, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)
    same = torch.stack([images(1)[0]] * 64)
    out = pol(same, torch.Generator().manual_seed(5))
    assert len({tuple(o.flatten()[::7].tolist()) for o in out}) > 32  # per-sample choices within one batch


@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3), (96, 3)])
def test_policies_all_sizes_and_channels(size, channels):
    x = images(8, size, channels)
    for name in ("randaugment", "ctaugment"):
        out = create_policy(name, AugmentConfig(), hflip=True)(x, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == torch.uint8


def sequential_update(rates, record, omega, decay):
    """The reference's loop (libml/ctaugment.py update_rates), one probe example after the other."""
    rates = {k: [r.copy() for r in v] for k, v in rates.items()}
    names = list(CTA_OPS)
    for i in range(record.ids.shape[0]):
        for d in range(record.ids.shape[1]):
            k = names[int(record.ids[i, d])]
            for j, rate in enumerate(rates[k]):
                b = int(float(record.values[i, d, j]) * len(rate) * 0.999)
                rate[b] = rate[b] * decay + float(omega[i]) * (1 - decay)
    return rates


def flat_to_dict(cta):
    out, pos = {}, 0
    for k, bins in CTA_OPS.items():
        out[k] = []
        for b in bins:
            out[k].append(cta.rates[pos : pos + b].numpy().astype(np.float64))
            pos += b
    return out


def test_cta_update_equals_sequential_reference():
    cta = CTAugment()
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ids = torch.randint(0, len(CTA_OPS), (64, 2), generator=g)
        ids[:8] = list(CTA_OPS).index("rotate")  # many hits of the same bins: updates must compound
        values = torch.rand(64, 2, 2, generator=g)
        omega = torch.rand(64, generator=g)
        before = flat_to_dict(cta)
        expect = sequential_update(before, CTRecord(ids, values), omega, 0.99)
        cta.update(CTRecord(ids, values), omega)
        got = flat_to_dict(cta)
        for k in CTA_OPS:
            for e, r in zip(expect[k], got[k], strict=True):
                np.testing.assert_allclose(r, e, rtol=1e-5, atol=1e-6)


def test_cta_rates_rise_for_kept_class_and_fall_for_destroyed():
    cta = CTAugment()
    g = torch.Generator().manual_seed(0)
    good, bad = list(CTA_OPS).index("brightness"), list(CTA_OPS).index("invert")
    x = images(256, size=8)
    for _ in range(300):  # each invert bin is hit ~1.6 times a step: 0.99^470 ≈ 0.01 of its start weight left
        _, rec = cta.probe(x, g)
        omega = torch.where((rec.ids == bad).any(1), 0.0, 1.0)
        cta.update(rec, omega)
    rates = flat_to_dict(cta)
    assert min(rates["brightness"][0]) > 0.9
    assert max(rates["invert"][0]) < 0.2
    assert (cta.probabilities()[good, 0, :17] > 0).all()  # every brightness bin stays above the threshold


def test_cta_sampling_respects_threshold():
    for sampling in ("fixmatch", "remixmatch"):
        cta = CTAugment(sampling=sampling)
        rot = list(CTA_OPS).index("rotate")
        start = int(cta.offsets[rot, 0])
        cta.rates[start : start + 17] = 0.0
        cta.rates[start + 5] = 1.0  # only bin 5 (and, for segments, its neighbours' segments) above threshold
        ids = torch.full((4000, 2), rot)
        v = cta.sample_values(ids, torch.Generator().manual_seed(0), probe=False)[..., 0]
        if sampling == "fixmatch":
            assert ((v >= 5 / 17) & (v < 6 / 17)).all()
        else:  # segments 4 (bins 4-5) and 5 (bins 5-6) have weight, each of 16 segments
            assert ((v >= 4 / 16) & (v < 6 / 16)).all()
            assert (v < 5 / 16).any() and (v >= 5 / 16).any()


def test_cta_probe_values_are_uniform():
    cta = CTAugment()
    cta.rates.zero_()
    ids = torch.zeros(20000, 2, dtype=torch.long)
    v = cta.sample_values(ids, torch.Generator().manual_seed(0), probe=True)
    assert 0.48 < float(v.mean()) < 0.52 and float(v.min()) >= 0 and float(v.max()) < 1


def test_cta_state_round_trip():
    cta = CTAugment()
    _, rec = cta.probe(images(16), torch.Generator().manual_seed(0))
    cta.update(rec, torch.rand(16))
    other = CTAugment()
    other.load_state_dict(cta.state_dict())
    assert torch.equal(other.rates, cta.rates)
    x = images(16)
    assert torch.equal(cta(x, torch.Generator().manual_seed(2)), other(x, torch.Generator().manual_seed(2)))
    with pytest.raises(ConfigError, match="bins"):
        other.load_state_dict({"rates": torch.ones(3)})


def test_cta_appends_cutout_only_when_asked():
    x = torch.full((256, 3, 32, 32), 200, dtype=torch.uint8)
    for cutout, expect_grey in ((True, True), (False, False)):
        cta = CTAugment(cutout=cutout)
        cta.rates.zero_()
        idx = list(CTA_OPS).index("identity")
        # force identity ops so that only the appended cutout can change pixels
        cta.names = tuple(CTA_OPS)
        ids = torch.full((256, 2), idx)
        v = cta.sample_values(ids, torch.Generator().manual_seed(0), probe=True)
        if cutout:
            ids = torch.cat([ids, torch.full((256, 1), list(CTA_OPS).index("cutout"))], 1)
            v = torch.cat([v, torch.ones(256, 1, 2)], 1)
        out = cta._apply(x, ids, v, torch.Generator().manual_seed(0))
        assert bool((out == 127).any()) == expect_grey


def test_bad_policy_configs():
    with pytest.raises(ConfigError, match="cta_sampling"):
        CTAugment(sampling="nope")
    with pytest.raises(ConfigError, match="at least one op"):
        RandAugment(n_ops=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"cta_sampling": "remixmatch", "cta_cutout": False},
        {"cta_translate": "fraction", "cta_rescale": "pixels"},
    ],
)
def test_policies_only_draw_parameters_that_pass_validation(kwargs, monkeypatch):
    """The policies call apply_ops with check=False: every parameter they draw must pass ops.validate anyway."""
    from ssl_bench.augment import ops, strong

    checked = []

    def checking(imgs, names, ids, params, fill, cutout_fill, check=True):
        ops.validate(imgs, names, ids, params, fill, cutout_fill)  # raises ConfigError on anything out of range
        checked.append(len(ids))
        return ops.apply_ops(imgs, names, ids, params, fill, cutout_fill)

    monkeypatch.setattr(strong, "apply_ops", checking)
    cfg = AugmentConfig(**kwargs)
    for name in ("randaugment", "ctaugment"):
        policy = create_policy(name, cfg, hflip=True)
        for seed in range(5):
            g = torch.Generator().manual_seed(seed)
            for size in (8, 16, 32):
                policy(images(n=200, size=size, seed=seed), g)
        if name == "ctaugment":
            policy.feedback.probe(images(n=200, size=16), torch.Generator().manual_seed(9))
    assert len(checked) == 2 * 5 * 3 + 1
