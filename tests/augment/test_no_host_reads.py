"""The accelerator path of the augmentation reads nothing on the host and gives the CPU path's pixels.

On a CUDA device a host read (``.tolist()``, ``bool(t)``, ``nonzero``, boolean indexing, ``bincount``,
``torch.multinomial``'s checks) waits for the device. Without a GPU this is checked two ways: the masked path
(``host_reads.no_host_reads``) gives bit for bit what the grouped CPU path gives, and the whole policy runs on fake CUDA
tensors (``FakeTensorMode``), where any data-dependent read raises.
"""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
)

from ssl_bench.augment import host_reads, ops
from ssl_bench.augment.strong import CTA_OPS, CTAugment, RandAugment, sample_categorical
from ssl_bench.augment.usb import RandAugmentUSB
from ssl_bench.augment.weak import weak_augment

DATA_DEPENDENT = (DataDependentOutputException, DynamicOutputShapeException)


def images(n=96, channels=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)


def trained_ctaugment(sampling: str, seed: int = 5) -> CTAugment:
    """A CTAugment whose bin weights are far from uniform (random rates), so sampling exercises them."""
    cta = CTAugment(sampling=sampling)
    g = torch.Generator().manual_seed(seed)
    cta.rates = torch.rand(cta.rates.shape, generator=g)
    return cta


POLICIES = {
    "randaugment": lambda: RandAugment(),
    "randaugment_usb": lambda: RandAugmentUSB(),
    "ctaugment": lambda: trained_ctaugment("fixmatch"),
    "ctaugment-remixmatch": lambda: trained_ctaugment("remixmatch"),
    "ctaugment-probe": lambda: lambda x, g: trained_ctaugment("remixmatch").probe(x, g)[0],
}


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 16)])
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_masked_path_equals_grouped_path(name, channels, size):
    x = images(channels=channels, size=size)
    grouped = POLICIES[name]()(x, torch.Generator().manual_seed(7))
    with host_reads.no_host_reads():
        masked = POLICIES[name]()(x, torch.Generator().manual_seed(7))
    assert torch.equal(grouped, masked)
    assert not torch.equal(grouped, x)


def test_ctaugment_update_is_the_same_without_host_reads():
    a, b = trained_ctaugment("fixmatch"), trained_ctaugment("fixmatch")
    g = torch.Generator().manual_seed(2)
    _, record = a.probe(images(n=64), g)
    omega = torch.rand(64, generator=g)
    a.update(record, omega)
    with host_reads.no_host_reads():
        b.update(record, omega)
    assert torch.equal(a.rates, b.rates)
    # parameters an op does not have ("identity", the second parameter of most ops) are not counted
    assert a.rates.numel() == sum(sum(bins) for bins in CTA_OPS.values())


def test_sample_categorical_draws_what_multinomial_draws():
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(500, 17, generator=g)
    weights[:, 12:] = 0
    weights[7] = torch.nn.functional.one_hot(torch.tensor(4), 17).float()
    ours, theirs = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(sample_categorical(weights, ours), torch.multinomial(weights, 1, generator=theirs))
    assert torch.equal(ours.get_state(), theirs.get_state())  # and leaves the stream where it does
    assert int(sample_categorical(weights[7:8], ours)) == 4


def test_policies_make_no_data_dependent_reads_on_cuda():
    """FakeTensorMode raises DataDependentOutputException / DynamicOutputShapeException at any host read."""
    ctas = [CTAugment(sampling=sampling) for sampling in ("fixmatch", "remixmatch")]  # built once, on the CPU
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.empty(64, 3, 32, 32, dtype=torch.uint8, device="cuda")
        assert weak_augment(x, None, flip=True, translate=0.125).device.type == "cuda"
        assert RandAugment()(x, None).shape == x.shape
        assert RandAugmentUSB()(x, None).shape == x.shape
        grey = torch.empty(64, 1, 32, 32, dtype=torch.uint8, device="cuda")
        assert RandAugmentUSB()(grey, None).shape == grey.shape
        for cta in ctas:
            assert cta(x, None).shape == x.shape
            probes, record = cta.probe(x, None)
            cta.update(record, torch.empty(64, device="cuda"))
            assert cta.rates.device.type == "cuda" and probes.shape == x.shape


def test_the_check_can_fail(monkeypatch):
    """The fake-CUDA check above catches host reads: the grouped CPU path, forced onto fake CUDA tensors, raises."""
    monkeypatch.setattr(ops, "host_reads", lambda t: True)
    with FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(DATA_DEPENDENT):
        RandAugment()(torch.empty(64, 3, 32, 32, dtype=torch.uint8, device="cuda"), None)
