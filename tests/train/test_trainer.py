import math

import pytest
import torch
from torch import nn

from ssl_bench.augment.strong import CTA_OPS
from ssl_bench.config import DataConfig, TrainConfig
from ssl_bench.data.datasets import load_dataset
from ssl_bench.data.splits import get_split
from ssl_bench.errors import CheckpointError
from ssl_bench.identity import run_hash
from ssl_bench.plan import expand, load_recipe, split_id
from ssl_bench.train import Trainer, median_last
from ssl_bench.train.optim import EMA, decay_split, lr_at, make_optimizer
from tests.conftest import ROOT


def test_cosine_schedule_golden():
    cfg = TrainConfig(lr=1.0, steps=16)
    assert lr_at(cfg, 0) == 1.0
    assert lr_at(cfg, 8) == pytest.approx(math.cos(7 * math.pi / 32))  # 0.7730
    assert lr_at(cfg, 16) == pytest.approx(0.19509, abs=1e-5)  # ends at cos(7*pi/16)
    assert lr_at(TrainConfig(lr=0.5, lr_schedule="constant"), 99) == 0.5


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, bias=True)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 3)


def test_weight_decay_only_on_weights():
    m = Tiny()
    decay, no_decay = decay_split(m)
    assert {id(p) for p in decay} == {id(m.conv.weight), id(m.fc.weight)}
    assert len(no_decay) == 4  # conv bias, BN gamma/beta, fc bias


def test_decay_scope_all_decays_every_parameter_as_the_uda_authors_code():
    m = Tiny()
    decay, no_decay = decay_split(m, "all")
    assert {id(p) for p in decay} == {id(p) for p in m.parameters()} and no_decay == []
    cfg = TrainConfig(lr=0.1, weight_decay=0.5, momentum=0.0, nesterov=False, decay_scope="all")
    opt = make_optimizer(cfg, m)
    b0 = m.fc.bias.detach().clone()
    opt.zero_grad()
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(m.fc.bias, b0 * (1 - 0.1 * 0.5))  # coupled L2 on the bias too: b - lr * wd * b


def test_sgd_couples_l2_on_weights_only():
    m = Tiny()
    cfg = TrainConfig(lr=0.1, weight_decay=0.5, momentum=0.0, nesterov=False)
    opt = make_optimizer(cfg, m)
    w0, b0 = m.fc.weight.detach().clone(), m.fc.bias.detach().clone()
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(m.fc.weight, w0 * (1 - 0.1 * 0.5))  # grad of wd * 1/2 ||w||^2 is wd * w
    assert torch.equal(m.fc.bias, b0)


def test_adam_decay_is_decoupled_after_the_step():
    from ssl_bench.train.optim import decoupled_decay

    m = Tiny()
    cfg = TrainConfig(optimizer="adam", lr=0.01, weight_decay=0.02)
    opt = make_optimizer(cfg, m)
    w0, b0 = m.fc.weight.detach().clone(), m.fc.bias.detach().clone()
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    decoupled_decay(cfg, opt, 0.01)
    assert torch.allclose(m.fc.weight, w0 * (1 - 0.02 * 0.01))
    assert torch.equal(m.fc.bias, b0)


def test_ema_update_rule_and_buffers():
    m = Tiny()
    ema = EMA(m, decay=0.9, warmup=False)
    w0 = m.fc.weight.detach().clone()
    with torch.no_grad():
        m.fc.weight.add_(1.0)
        m.bn.running_mean.fill_(3.0)
    ema.update(m)
    assert torch.allclose(ema.model.fc.weight, 0.9 * w0 + 0.1 * (w0 + 1))
    # buffers copied (docs/reference/common.md#ema-model)
    assert torch.equal(ema.model.bn.running_mean, m.bn.running_mean)
    warm = EMA(m, decay=0.999, warmup=True)
    with torch.no_grad():
        m.fc.weight.add_(1.0)
    warm.update(m)  # first update: decay min(0.999, 1/10)
    assert torch.allclose(warm.model.fc.weight, 0.1 * (w0 + 1) + 0.9 * (w0 + 2))


def test_median_last():
    hist = [(i, a) for i, a in enumerate([0.1, 0.9, 0.5, 0.7, 0.6])]
    assert median_last(hist, 3) == 0.6
    assert median_last(hist, 2) == pytest.approx(0.65)
    assert median_last(hist, 20) == 0.6


def smoke_run(steps=60):
    recipe = load_recipe(ROOT / "recipes/smoke.toml", [f"train.steps={steps}", "train.eval_every=10"])
    (run,) = expand(recipe)
    ds = load_dataset(run.data)
    return run, ds, get_split(ds, split_id(run), "balanced", None), run_hash(run)


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    run, ds, split, h = smoke_run()
    full = Trainer(run, ds, split, h).run(tmp_path / "a.pt")
    first = Trainer(run, ds, split, h)
    assert first.run(tmp_path / "b.pt", stop_at=30) is None and (tmp_path / "b.pt").exists()
    del first
    resumed = Trainer(run, ds, split, h)
    result = resumed.run(tmp_path / "b.pt")
    assert resumed.step == 60
    assert result.acc_history == full.acc_history
    assert result.acc_median == full.acc_median and result.acc_final == full.acc_final
    assert result.acc_raw_final == full.acc_raw_final


def test_corrupted_or_foreign_checkpoint_is_an_error(tmp_path):
    run, ds, split, h = smoke_run(steps=20)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupted or unreadable"):
        Trainer(run, ds, split, h).run(bad)
    good = tmp_path / "good.pt"
    Trainer(run, ds, split, h).run(good, stop_at=10)
    with pytest.raises(CheckpointError, match="config hash mismatch"):
        Trainer(run, ds, split, "0" * 64).run(good)
    other = get_split(ds, split_id(run).__class__("digits", 2, 40, 0), "balanced", None)
    with pytest.raises(CheckpointError, match="split hash mismatch"):
        Trainer(run, ds, other, h).run(good)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupted"):
        Trainer(run, ds, split, h).run(truncated)


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    run, ds, split, h = smoke_run(steps=20)
    run.train.tensorboard = True
    Trainer(run, ds, split, h).run(None, log_dir=tmp_path / "tb")
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_data_config_defaults_are_offline():
    assert DataConfig().dataset == "digits" and DataConfig().download is False


@pytest.mark.parametrize("policy", ["weak", "randaugment", "ctaugment"])
def test_supervised_runs_with_every_policy(policy, tmp_path):
    recipe = load_recipe(
        ROOT / "recipes/smoke.toml",
        ["train.steps=12", "train.eval_every=6", "algorithm.view=strong", f"augment.strong={policy!r}"],
    )
    (run,) = expand(recipe)
    ds = load_dataset(run.data)
    split = get_split(ds, split_id(run), "balanced", None)
    trainer = Trainer(run, ds, split, run_hash(run))
    assert bool(trainer.feedback) == (policy == "ctaugment")
    result = trainer.run(tmp_path / "c.pt")
    assert result.steps == 12 and 0 <= result.acc_median <= 1
    if policy == "ctaugment":
        assert not torch.equal(
            trainer.feedback["ctaugment"].rates, torch.ones_like(trainer.feedback["ctaugment"].rates)
        )


def test_resume_restores_ctaugment_state(tmp_path):
    overrides = ["train.steps=30", "train.eval_every=10", "algorithm.view=strong", "augment.strong='ctaugment'"]
    recipe = load_recipe(ROOT / "recipes/smoke.toml", overrides)
    (run,) = expand(recipe)
    ds = load_dataset(run.data)
    split = get_split(ds, split_id(run), "balanced", None)
    h = run_hash(run)
    full = Trainer(run, ds, split, h)
    full_result = full.run(tmp_path / "a.pt")
    Trainer(run, ds, split, h).run(tmp_path / "b.pt", stop_at=10)
    resumed = Trainer(run, ds, split, h)
    result = resumed.run(tmp_path / "b.pt")
    assert result.acc_history == full_result.acc_history
    assert torch.equal(resumed.feedback["ctaugment"].rates, full.feedback["ctaugment"].rates)


def test_adamatch_schedule_and_averaged_buffers():
    cfg = TrainConfig(lr=1.0, steps=10, lr_schedule="cosine_quarter")
    assert lr_at(cfg, 0) == 1.0 and lr_at(cfg, 10) == pytest.approx(0.25)
    m = Tiny()
    ema = EMA(m, decay=0.5, warmup=False, buffers="average")
    with torch.no_grad():
        m.bn.running_mean.fill_(4.0)
    ema.update(m)
    assert torch.allclose(ema.model.bn.running_mean, torch.full((2,), 2.0))  # 0.5 * 0 + 0.5 * 4
    assert int(ema.model.bn.num_batches_tracked) == int(m.bn.num_batches_tracked)  # integer buffers copied


def test_probes_feed_the_ema_models_p_true_class_back_into_ctaugment(monkeypatch):
    """docs/reference/augmentation.md#ctaugment: every step's labeled images, weakly augmented, get a probe policy; the
    EMA model classifies the probes and omega = its probability of the true class moves every bin the policy used, one
    example after the other: m[b] <- 0.99 m[b] + 0.01 omega with b = int(v * nbins * 0.999). The stub EMA model gives
    class c the probability q[c] on every image, so omega is known."""
    overrides = ["train.steps=4", "algorithm.view=strong", "augment.strong='ctaugment'"]
    (run,) = expand(load_recipe(ROOT / "recipes/smoke.toml", overrides))
    ds = load_dataset(run.data)
    trainer = Trainer(run, ds, get_split(ds, split_id(run), "balanced", None), run_hash(run))
    q = torch.tensor([0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.18, 0.25])

    class FixedProbabilities(nn.Module):
        def forward(self, x):
            return q.log().expand(len(x), -1)

    trainer.ema.model = FixedProbabilities()
    cta = trainer.feedback["ctaugment"]
    records, probe = [], cta.probe
    monkeypatch.setattr(cta, "probe", lambda images, g: records.append(probe(images, g)) or records[-1])
    bins = list(CTA_OPS.items())  # (op, bins per parameter) in the order of the flat rates
    expected = {op: [[1.0] * n for n in nb] for op, nb in bins}
    labeled = (trainer.feed.labels >= 0).nonzero().flatten()  # the 40 images whose labels the run holds
    for step, idx in enumerate((labeled[:32], labeled[8:40])):
        trainer.probe_feedback(idx)
        _, record = records[step]
        omega = q[trainer.feed.labels[idx]].tolist()
        for i in range(len(idx)):
            for d in range(record.ids.shape[1]):
                op = bins[int(record.ids[i, d])][0]
                for j, rate in enumerate(expected[op]):
                    b = int(float(record.values[i, d, j]) * len(rate) * 0.999)
                    rate[b] = 0.99 * rate[b] + 0.01 * omega[i]
        flat = [r for _, params in ((op, expected[op]) for op, _ in bins) for rate in params for r in rate]
        torch.testing.assert_close(cta.rates, torch.tensor(flat), rtol=1e-5, atol=1e-7)
    assert len(set(q[trainer.feed.labels[labeled]].tolist())) == 10  # omega differs between examples
