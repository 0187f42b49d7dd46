"""Every registered algorithm passes the shared conformance checks (ssl_bench.conformance)."""

import pytest

from ssl_bench.algorithms import ALGORITHMS
from ssl_bench.conformance import CHECKS, SLOW_CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_conformance(name, check):
    check(name)


@pytest.mark.slow
@pytest.mark.parametrize("check", SLOW_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_conformance_slow(name, check):
    check(name)


def test_a_broken_algorithm_fails_the_suite(monkeypatch):
    """The checks can fail: a config without a citation and a non-deterministic step are caught."""
    from dataclasses import dataclass

    import torch.nn.functional as F

    from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
    from ssl_bench.augment.views import ViewSpec
    from ssl_bench.conformance import check_config, check_determinism
    from ssl_bench.registry import Registry

    @dataclass(frozen=True)
    class NoisyConfig(AlgorithmConfig):
        name: str = "noisy"

    class Noisy(Algorithm):
        Config = NoisyConfig

        def views(self):
            return ViewSpec(labeled=("weak",))

        calls = 0  # hidden state shared across instances: a second identical run sees other values

        def step(self, batch, progress):
            Noisy.calls += 1
            return F.cross_entropy(self.model(batch.x[0]), batch.y) * Noisy.calls, {}

    reg: Registry = Registry("algorithm")
    reg.add("noisy", Noisy)
    monkeypatch.setattr("ssl_bench.algorithms.ALGORITHMS", reg)
    monkeypatch.setattr("ssl_bench.registry.ALGORITHMS", reg)
    with pytest.raises(AssertionError, match="cite"):
        check_config("noisy")
    monkeypatch.setattr(NoisyConfig, "limits", {"name": "[0, 1]"}, raising=False)  # a table no check reads
    with pytest.raises(AssertionError, match="Noisy.Config defaults against its ranges: .*limits is not read"):
        check_config("noisy")
    with pytest.raises(AssertionError):
        check_determinism("noisy")
