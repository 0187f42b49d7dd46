"""Conformance checks every registered algorithm must pass (design.md, Style), built through ``build_run``.

Built-in and out-of-tree algorithms alike: ``ssl-bench check NAME [--plugin MODULE]`` runs them from the command
line, and pytest users parametrize over ``CHECKS`` (``tests/algorithms/test_conformance.py`` does so over the whole
registry).
"""

from __future__ import annotations

import dataclasses
import inspect

import torch

from ssl_bench.algorithms import Algorithm, get_algorithm
from ssl_bench.augment import ViewBuilder
from ssl_bench.augment.views import Batch, to_input
from ssl_bench.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    to_dict,
)
from ssl_bench.data.images import ImageDataset
from ssl_bench.errors import ConfigError
from ssl_bench.train import RunParts, build_run
from ssl_bench.values import check_limits, from_dict

NUM_CLASSES, CHANNELS, SIZE, BATCH = 4, 3, 8, 8


def tiny_data(seed: int = 0, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy uint8 images of 4 classes; class c lights up quadrant c (so that mixing two images stays legible)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % NUM_CLASSES
    images = torch.randint(0, 80, (n, CHANNELS, SIZE, SIZE), generator=g)
    half = SIZE // 2
    for c in range(NUM_CLASSES):
        r, k = divmod(c, 2)
        images[labels == c, :, r * half : (r + 1) * half, k * half : (k + 1) * half] += 150
    return images.clamp(0, 255).to(torch.uint8), labels


def tiny_dataset() -> ImageDataset:
    """``tiny_data`` as a dataset; no flips, which would swap the class quadrants."""
    images, labels = tiny_data()
    return ImageDataset("tiny", images, labels, images, labels, num_classes=NUM_CLASSES, hflip=False)


def tiny_run(name: str, seed: int = 0) -> RunParts:
    """The algorithm with its default config around a tiny CNN for 8x8 RGB images and 4 classes, and the
    default policy of each of its view roles."""
    run = RunConfig(
        seed=seed,
        data=DataConfig(),
        # BN momentum 0.1: running statistics must settle within the few steps of these checks
        model=ModelConfig(name="small_cnn", width=1, bn_momentum=0.1),
        augment=AugmentConfig(),
        train=TrainConfig(),
        algorithm=get_algorithm(name).Config(),
    )
    return build_run(run, tiny_dataset())


def tiny_algorithm(name: str, seed: int = 0) -> Algorithm:
    return tiny_run(name, seed).algorithm


def tiny_batch(parts: RunParts, seed: int = 0, labels: torch.Tensor | None = None) -> Batch:
    """A batch built through the real views pipeline: labeled indices 0..BATCH-1, unlabeled from the rest."""
    images, true_labels = tiny_data()
    g = torch.Generator().manual_seed(seed)
    builder = ViewBuilder(images, true_labels if labels is None else labels, parts.spec, parts.policies, g)
    unl = torch.arange(BATCH, BATCH + BATCH * parts.spec.uratio) if parts.spec.uratio else None
    return builder.build(torch.arange(BATCH), unl)


def _step(algo: Algorithm, batch: Batch, progress: float = 0.5) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(1234)
    return algo.step(batch, progress)


def check_config(name: str) -> None:
    """Defaults construct, round-trip through a plain dict, are frozen, lie within their own ``limits``, and the
    config cites its source."""
    cls = get_algorithm(name)
    cfg = cls.Config()
    assert cfg.name == name, f"{cls.__name__}.Config().name is {cfg.name!r}, expected {name!r}"
    try:
        check_limits(cfg, "algorithm", name)
    except (TypeError, ConfigError) as exc:
        raise AssertionError(f"{cls.__name__}.Config defaults against its limits: {exc}") from None
    assert from_dict(cls.Config, to_dict(cfg), "algorithm") == cfg
    assert dataclasses.is_dataclass(cfg) and cls.Config.__dataclass_params__.frozen, "config must be a frozen dataclass"
    doc = inspect.getdoc(cls.Config) or ""
    source = inspect.getsource(cls.Config)
    assert "§" in doc or "arXiv" in doc or "§" in source, f"{cls.__name__}.Config must cite its defaults' source"


def check_finite(name: str) -> None:
    """One step gives a finite scalar loss, finite gradients on every trainable parameter, and scalar metrics."""
    parts = tiny_run(name)
    algo = parts.algorithm
    loss, metrics = _step(algo, tiny_batch(parts))
    assert loss.ndim == 0 and torch.isfinite(loss), f"loss {loss}"
    loss.backward()
    grads = [p.grad for p in algo.parameters() if p.requires_grad]
    assert any(g is not None for g in grads), "no parameter received a gradient"
    for g in grads:
        assert g is None or torch.isfinite(g).all(), "non-finite gradient"
    for key, value in metrics.items():
        assert "/" in key, f"metric {key!r} is not namespaced (e.g. loss/x)"
        assert torch.as_tensor(value).numel() == 1, f"metric {key} is not a scalar"


def check_unlabeled_labels_unused(name: str) -> None:
    """Batches carry no unlabeled labels, and scrambling every label outside the labeled set changes nothing."""
    fields = {f.name for f in dataclasses.fields(Batch)}
    # x_target / y_target are the labeled target images of the ssda setting: labeled, not unlabeled
    expected = {"x", "y", "u", "x_target", "y_target"}
    assert fields == expected, f"Batch has fields {fields}: an unlabeled label must have no way in"
    images, labels = tiny_data()
    scrambled = labels.clone()
    scrambled[BATCH:] = (labels[BATCH:] + 1 + torch.arange(len(labels) - BATCH) % 3) % NUM_CLASSES
    assert (scrambled[BATCH:] != labels[BATCH:]).all()
    losses = []
    for lab in (labels, scrambled):
        parts = tiny_run(name)
        batch = tiny_batch(parts, labels=lab)
        algo = parts.algorithm
        assert len(batch.y) == BATCH
        losses.append(_step(algo, batch)[0].detach())
    assert torch.equal(losses[0], losses[1]), "the loss depends on the labels of unlabeled images"


def check_determinism(name: str) -> None:
    """Same seeds on CPU: identical loss and identical parameters after two optimizer steps."""
    results = []
    for _ in range(2):
        parts = tiny_run(name)
        algo = parts.algorithm
        opt = torch.optim.SGD(algo.parameters(), lr=0.1)
        losses = []
        for s in range(2):
            loss, _ = _step(algo, tiny_batch(parts, seed=s), progress=0.1 * s)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        results.append((losses, [p.detach().clone() for p in algo.parameters()]))
    (l0, p0), (l1, p1) = results
    assert all(torch.equal(a, b) for a, b in zip(l0, l1, strict=True)), "losses differ between identical runs"
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True)), "parameters differ between identical runs"


def check_state_roundtrip(name: str) -> None:
    """state_dict -> load_state_dict into a fresh instance reproduces the next step exactly (buffers included)."""
    parts = tiny_run(name, seed=0)
    algo = parts.algorithm
    opt = torch.optim.SGD(algo.parameters(), lr=0.1)
    loss, _ = _step(algo, tiny_batch(parts, seed=0))
    opt.zero_grad()
    loss.backward()
    opt.step()
    state = {k: v.clone() for k, v in algo.state_dict().items()}
    fresh_parts = tiny_run(name, seed=99)
    fresh = fresh_parts.algorithm
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), f"state entry {k} did not round-trip"
    a = _step(algo, tiny_batch(parts, seed=1))[0]
    b = _step(fresh, tiny_batch(fresh_parts, seed=1))[0]
    assert torch.equal(a.detach(), b.detach()), "restored state gives a different next step"


def check_learns(name: str, steps: int = 300) -> None:
    """On tiny separable data, training lowers the labeled loss and classifies the whole set (slow)."""
    parts = tiny_run(name)
    algo = parts.algorithm
    opt = torch.optim.SGD(algo.parameters(), lr=0.01, momentum=0.9)
    images, labels = tiny_data()
    first = last = None
    for s in range(steps):
        loss, metrics = algo.step(tiny_batch(parts, seed=s), s / steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        labeled_loss = float(metrics.get("loss/x", loss.detach()))  # ramped terms make the total loss grow
        first = labeled_loss if first is None else first
        last = labeled_loss
    algo.eval()
    with torch.no_grad():
        acc = (algo.model(to_input(images)).argmax(1) == labels).float().mean().item()
    assert last < first, f"labeled loss did not decrease ({first:.3f} -> {last:.3f})"
    assert acc >= 0.9, f"accuracy {acc:.2f} on tiny separable data after {steps} steps"


CHECKS = [check_config, check_finite, check_unlabeled_labels_unused, check_determinism, check_state_roundtrip]
SLOW_CHECKS = [check_learns]


def run_checks(name: str, checks: list | None = None) -> list[tuple[object, str | None]]:
    """Run ``checks`` (default: ``CHECKS``) on algorithm ``name``: (check, None) for a pass, (check, one-line reason)
    for a failure. Every check runs, whatever the others gave."""
    out = []
    for check in CHECKS if checks is None else checks:
        try:
            check(name)
        except Exception as exc:  # a failing check (AssertionError) or a crashing algorithm: both are failures
            text = " ".join(str(exc).split())
            out.append((check, f"{type(exc).__name__}: {text}" if text else type(exc).__name__))
        else:
            out.append((check, None))
    return out
