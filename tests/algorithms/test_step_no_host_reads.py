"""Every algorithm's step reads nothing on the host on CUDA: its forward pass and losses run on fake CUDA tensors
(``FakeTensorMode``), where a data-dependent read (``.item()``, boolean indexing, indexing with a tensor scalar)
raises. Without a GPU this is how the suite checks that the step does not make the host wait for the device."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ssl_bench.algorithms import ALGORITHMS
from ssl_bench.augment.views import Batch
from ssl_bench.data import load_data
from ssl_bench.data.splits import get_run_split
from ssl_bench.plan import expand, load_recipe
from ssl_bench.train.build import build_run
from ssl_bench.train.feed import data_info


@pytest.fixture
def fake_cuda(monkeypatch):
    """``module.to`` on fake tensors needs new Parameter objects instead of assigning ``.data``, and fake tensors
    cannot be pinned (pinning is a host-memory matter, outside what this test checks)."""
    before = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *args, **kwargs: self)
    yield
    torch.__future__.set_overwrite_module_params_on_conversion(before)


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_step_makes_no_host_reads_on_cuda(name, fake_cuda):
    run = expand(load_recipe(f"recipes/digits/{name}.toml", ["grid.seeds=[1]", "grid.n_labels=[20]"]))[0]
    ds = load_data(run.data)
    split = get_run_split(ds, run.data, run.seed, None)
    data = data_info(run, ds.train_labels, ds.num_classes, split, split.labeled)
    parts = build_run(run, ds, torch.device("cpu"), data=data)
    algorithm, spec, b = parts.algorithm, parts.spec, 8
    with FakeTensorMode(allow_non_fake_inputs=True):
        algorithm.to("cuda")
        parts.ema.model.to("cuda")  # the teacher

        def views(n: int, roles: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
            return tuple(torch.empty(n, ds.channels, ds.image_size, ds.image_size, device="cuda") for _ in roles)

        batch = Batch(
            x=views(b, spec.labeled),
            y=torch.zeros(b, dtype=torch.int64, device="cuda"),
            u=views(b * spec.uratio, spec.unlabeled),
            idx_x=torch.arange(b, device="cuda"),
            idx_u=torch.arange(b, b + b * spec.uratio, device="cuda") if spec.uratio else None,
        )
        for progress in (0.005, 0.5):  # warm-ups and ramps (Dash's warm-up keeps losses) and after them
            loss, metrics = algorithm.step(batch, progress)
    assert loss.device.type == "cuda" and loss.shape == ()
    assert all(not isinstance(v, torch.Tensor) or v.device.type == "cuda" for v in metrics.values())


def test_optimizer_ema_and_divergence_guard_make_no_host_reads_on_cuda(fake_cuda):
    """The rest of a step after the backward pass: the SGD update (every digits and CIFAR recipe but MMA's), the
    EMA and the divergence watch. Adam is left out: it keeps its step counts on the host by design (torch's
    non-capturable Adam), which fake tensors cannot tell from a device read. FakeTensor is not an exact
    ``torch.Tensor``, so torch takes SGD's per-tensor path here rather than the foreach one a real GPU runs."""
    from ssl_bench.train.divergence import DivergenceGuard
    from ssl_bench.train.optim import make_optimizer

    run = expand(load_recipe("recipes/digits/fixmatch.toml", ["grid.seeds=[1]", "grid.n_labels=[20]"]))[0]
    ds = load_data(run.data)
    parts = build_run(run, ds, torch.device("cpu"))
    with FakeTensorMode(allow_non_fake_inputs=True):
        parts.algorithm.to("cuda")
        parts.ema.model.to("cuda")
        optimizer = make_optimizer(run.train, parts.algorithm)
        guard = DivergenceGuard(run.train, ds.num_classes, torch.device("cuda"))
        for step in (1, 2):  # the second step reads the momentum buffers the first one made
            for p in parts.algorithm.parameters():
                p.grad = torch.zeros_like(p)
            optimizer.step()
            parts.ema.update(parts.algorithm.model)
            guard.watch(step, torch.zeros((), device="cuda"))
    buffers = [s["momentum_buffer"] for s in optimizer.state.values()]
    assert buffers and all(b.device.type == "cuda" for b in buffers)
    assert all(p.device.type == "cuda" for p in parts.ema.model.parameters()) and parts.ema.updates == 2
    assert guard.first_bad.device.type == "cuda"
