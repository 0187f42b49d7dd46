"""Policy-level tests of RandAugment and CTAugment: spec frequencies, seeded determinism, per-sample variety,
CTAugment's update rule against a sequential reference, threshold, and state round-trip."""

import numpy as np
import pytest
import scipy.stats
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


def test_cta_probe_values_are_uniform_whatever_the_weights():
    """Probe values are U(0, 1) for every parameter (docs/reference/augmentation.md#ctaugment, weights ignored), even
    when the learned weights would put every training draw into one bin: KS and 17-bin chi-square tests against the
    uniform distribution."""
    cta = CTAugment()
    rot = list(CTA_OPS).index("rotate")
    start = int(cta.offsets[rot, 0])
    cta.rates[start : start + 17] = 0.0
    cta.rates[start + 5] = 1.0  # a training draw of rotate now always lands in bin 5
    ids = torch.full((20000, 2), rot)
    g = torch.Generator().manual_seed(0)
    probe = cta.sample_values(ids, g, probe=True).flatten().numpy()
    assert scipy.stats.kstest(probe, "uniform").pvalue > 1e-3
    counts = np.bincount((probe * 17).astype(int), minlength=17)
    assert scipy.stats.chisquare(counts).pvalue > 1e-3 and float(probe.min()) >= 0 and float(probe.max()) < 1
    trained = cta.sample_values(ids, g, probe=False)[..., 0].flatten().numpy()
    assert scipy.stats.kstest(trained, "uniform").pvalue < 1e-12  # the same test does see learned weights
    _, record = cta.probe(images(2000, size=8, channels=1), g)  # and the probe policy is what the probes use
    assert scipy.stats.kstest(record.values.flatten().numpy(), "uniform").pvalue > 1e-3


# (op, v0, v1) -> native (p0, p1) at 32 x 32, hand-computed from the formulas of
# docs/reference/augmentation.md#ctaugment
NATIVE_GOLDEN = [
    ("autocontrast", 0.3, 0.0, 0.3, 0.0),
    ("invert", 1.0, 0.0, 1.0, 0.0),
    ("brightness", 0.5, 0.0, 1.05, 0.0),  # 0.1 + 1.9 v
    ("sharpness", 0.0, 0.0, 0.1, 0.0),
    ("posterize", 0.5, 0.0, 4.0, 0.0),  # 1 + int(7.999 * 0.5) = 1 + 3
    ("posterize", 1.0, 0.0, 8.0, 0.0),
    ("solarize", 0.5, 0.0, 127.0, 0.0),  # int(255.999 * 0.5)
    ("solarize", 1.0, 0.0, 255.0, 0.0),
    ("rotate", 0.9, 0.0, 36.0, 0.0),  # round(0.8 * 45)
    ("rotate", 0.1, 0.0, -36.0, 0.0),
    ("shear_x", 0.75, 0.0, 0.15, 0.0),  # (2v - 1) * 0.3
    ("shear_y", 0.25, 0.0, -0.15, 0.0),
    ("translate_x", 1.0, 0.0, 0.3, 0.0),  # pixels: at most 0.3 px (the code's quirk)
    ("translate_y", 0.0, 0.0, -0.3, 0.0),
    ("rescale", 0.5, 0.5, 4.0, 2.0),  # fraction: 0.25 * 0.5 * 32 px per side; method int(5.99 * 0.5)
    ("rescale", 1.0, 1.0, 8.0, 5.0),
    ("cutout", 1.0, 0.0, 16.0, None),  # 2 * ((1 + int(0.499 * 32)) // 2) = 2 * (16 // 2)
    ("cutout", 0.5, 0.0, 8.0, None),  # 2 * ((1 + 7) // 2)
    ("cutout", 0.3, 0.0, 4.0, None),  # 2 * ((1 + 4) // 2)
    ("identity", 0.7, 0.7, 0.0, 0.0),
]


def test_cta_native_params_golden():
    names = list(CTA_OPS)
    ids = torch.tensor([[names.index(row[0])] for row in NATIVE_GOLDEN])
    v = torch.tensor([[[row[1], row[2]]] for row in NATIVE_GOLDEN])
    native = CTAugment().native_params(ids, v, 32, 32, torch.Generator().manual_seed(0))[:, 0]
    for (name, v0, _, p0, p1), got in zip(NATIVE_GOLDEN, native.tolist(), strict=True):
        assert got[0] == pytest.approx(p0, abs=1e-5), (name, v0, got)
        if name == "cutout":  # the centre: an integer pixel of the image
            assert 0 <= got[1] < 32 and 0 <= got[2] < 32 and got[1] == int(got[1]) and got[2] == int(got[2])
        else:
            assert got[1] == pytest.approx(p1) and got[2] == 0.0, (name, got)
    # the papers' variants: translate by a fraction of the side, rescale by pixels
    other = CTAugment(translate="fraction", rescale="pixels")
    ids = torch.tensor([[names.index("translate_x")], [names.index("rescale")]])
    got = other.native_params(ids, torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]]), 32, 32, torch.Generator())[:, 0, 0]
    assert got.tolist() == pytest.approx([9.6, 0.25])  # 0.3 * 32 px; 0.25 px
    # cutout centres are drawn uniformly over the pixels
    many = torch.full((4000, 1), names.index("cutout"))
    centres = other.native_params(many, torch.ones(4000, 1, 2), 32, 32, torch.Generator().manual_seed(1))[:, 0, 1:]
    assert set(centres.flatten().long().tolist()) == set(range(32))


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


def has_square(mask: np.ndarray, k: int) -> np.ndarray:
    """(N,) whether each (N, H, W) boolean mask holds a k x k block of True (integral-image box sums)."""
    s = np.pad(mask.astype(np.int64).cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    box = s[:, k:, k:] - s[:, :-k, k:] - s[:, k:, :-k] + s[:, :-k, :-k]
    return (box == k * k).any(axis=(1, 2))


def test_cta_appends_cutout_only_when_asked():
    """The training policy itself, on a constant image: cutout(v = 1) is a 16 px grey (127) square at 32 px with a
    centre anywhere, so at least an 8 x 8 corner of it lies inside every image. Without it, only the images whose
    two random ops include CTAugment's own cutout op (1 - (18/19)^2 = 10 %) can hold one."""
    x = torch.full((128, 3, 32, 32), 200, dtype=torch.uint8)
    for cutout in (True, False):
        out = CTAugment(cutout=cutout)(x, torch.Generator().manual_seed(0))
        grey = has_square((out == 127).all(1).numpy(), 8)
        if cutout:
            assert grey.all()
        else:
            assert grey.mean() < 0.15, grey.mean()


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
