"""Conformance checks every registered algorithm must pass (docs/adding-an-algorithm.md#conformance-checks), built
through ``build_run``.

Built-in and out-of-tree algorithms alike: ``ssl-bench check NAME [--plugin MODULE]`` runs them from the command
line, and pytest users parametrize over ``CHECKS`` (``tests/algorithms/test_conformance.py`` does so over the whole
registry).
"""

from __future__ import annotations

import dataclasses
import inspect
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ssl_bench.algorithms import Algorithm, DataInfo, get_algorithm
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
from ssl_bench.config_checks import check_ranges, from_dict
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.splits import Split
from ssl_bench.errors import ConfigError
from ssl_bench.train import RunParts, Trainer, build_run

NUM_CLASSES, CHANNELS, SIZE, BATCH, N_TINY = 4, 3, 8, 8, 64
# the tiny runs' sets: labeled = images 0..BATCH-1 (two per class), unlabeled = the others
TINY_DATA = DataInfo(NUM_CLASSES, N_TINY, BATCH, N_TINY - BATCH, (BATCH // NUM_CLASSES,) * NUM_CLASSES)


def tiny_data(seed: int = 0, n: int = N_TINY) -> tuple[torch.Tensor, torch.Tensor]:
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


def tiny_config(name: str, seed: int = 0, train: TrainConfig | None = None) -> RunConfig:
    """The algorithm with its default config around a tiny CNN for 8x8 RGB images and 4 classes."""
    return RunConfig(
        seed=seed,
        data=DataConfig(unlabeled_includes_labeled=False),  # the unlabeled pool of TINY_DATA
        # BN momentum 0.1: running statistics must settle within the few steps of these checks
        model=ModelConfig(name="small_cnn", width=1, bn_momentum=0.1),
        augment=AugmentConfig(),
        train=train or TrainConfig(),
        algorithm=get_algorithm(name).Config(),
    )


def tiny_run(name: str, seed: int = 0) -> RunParts:
    """``tiny_config``'s parts, the default policy of each of the algorithm's view roles, sized for ``TINY_DATA``."""
    return build_run(tiny_config(name, seed), tiny_dataset(), data=TINY_DATA)


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
    """Defaults construct, round-trip, are frozen, lie within their ranges, and the config cites its source.

    Round-trip: through a plain dict; ranges: the ``Range`` each field declares (``config_checks``)."""
    cls = get_algorithm(name)
    cfg = cls.Config()
    assert cfg.name == name, f"{cls.__name__}.Config().name is {cfg.name!r}, expected {name!r}"
    try:
        check_ranges(cfg, "algorithm", name)
    except (TypeError, ConfigError) as exc:
        raise AssertionError(f"{cls.__name__}.Config defaults against its ranges: {exc}") from None
    assert from_dict(cls.Config, to_dict(cfg), "algorithm") == cfg
    params = getattr(cls.Config, "__dataclass_params__", None)  # what @dataclass was given; no typed way to read it
    assert dataclasses.is_dataclass(cfg) and params is not None and params.frozen, "config must be a frozen dataclass"
    doc = inspect.getdoc(cls.Config) or ""
    source = inspect.getsource(cls.Config)
    cites = ("docs/", "arXiv", "§", "http", "Table", "Section")  # a docs page, a paper, a section or a link
    assert any(c in doc + source for c in cites), f"{cls.__name__}.Config must cite its defaults' source"


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


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a is None and b is None


def check_unlabeled_labels_unused(name: str) -> None:
    """Scrambling every label outside the labeled set changes no field of the batch and not the loss."""
    images, labels = tiny_data()
    scrambled = labels.clone()
    scrambled[BATCH:] = (labels[BATCH:] + 1 + torch.arange(len(labels) - BATCH) % 3) % NUM_CLASSES
    assert (scrambled[BATCH:] != labels[BATCH:]).all()
    losses, batches = [], []
    for lab in (labels, scrambled):
        parts = tiny_run(name)
        batch = tiny_batch(parts, labels=lab)
        algo = parts.algorithm
        assert len(batch.y) == BATCH
        losses.append(_step(algo, batch)[0].detach())
        batches.append(batch)
    for f in dataclasses.fields(Batch):  # a field that carried unlabeled labels would differ between the two
        a, b = getattr(batches[0], f.name), getattr(batches[1], f.name)
        assert _same(a, b), f"batch field {f.name} depends on the labels of unlabeled images"
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
    """The state (buffers included) and the EMA loaded into a fresh instance reproduce the next step exactly.

    state_dict -> load_state_dict, the EMA (the teacher) too, as a checkpoint holds both."""
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
    fresh_parts.ema.load_state_dict(parts.ema.state_dict())
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), f"state entry {k} did not round-trip"
    a = _step(algo, tiny_batch(parts, seed=1))[0]
    b = _step(fresh, tiny_batch(fresh_parts, seed=1))[0]
    assert torch.equal(a.detach(), b.detach()), "restored state gives a different next step"


def check_teacher_unchanged(name: str) -> None:
    """A step leaves the EMA model (the teacher) as it was: weights, BN statistics, mode, no gradient."""
    parts = tiny_run(name)
    ema = parts.ema.model
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    training = ema.training
    loss, _ = _step(parts.algorithm, tiny_batch(parts))
    loss.backward()
    for k, v in ema.state_dict().items():
        assert torch.equal(v, before[k]), f"the step changed the EMA model's {k}"
    assert ema.training == training, "the step changed the EMA model's train/eval mode"
    assert all(p.grad is None for p in ema.parameters()), "a gradient reached the EMA model"


def tiny_trainer(name: str, steps: int) -> Trainer:
    """The real trainer on the tiny data set: labeled images 0..BATCH-1, the others unlabeled, fp32, no progress."""
    train = TrainConfig(
        steps=steps,
        batch_size=BATCH,
        eval_every=2,
        median_k=1,
        progress=False,
        precision="fp32",
        memory_format="contiguous",
        divergence=False,
    )
    split = Split("tiny.0@8-0", np.arange(BATCH), np.zeros(0, dtype=np.int64), "tiny", "balanced")
    return Trainer(tiny_config(name, train=train), tiny_dataset(), split, "conformance")


def _watch_indices(trainer: Trainer) -> list[tuple[list[int], list[int]]]:
    """Every step's (idx_x, idx_u) as the algorithm receives them."""
    seen: list[tuple[list[int], list[int]]] = []
    step = trainer.algorithm.step

    def watched(batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        assert batch.idx_x is not None, "the trainer's batch has no idx_x"
        seen.append((batch.idx_x.tolist(), [] if batch.idx_u is None else batch.idx_u.tolist()))
        return step(batch, progress)

    object.__setattr__(trainer.algorithm, "step", watched)  # an instance attribute in front of the method
    return seen


def check_resume_through_trainer(name: str, steps: int = 6) -> None:
    """Through the real trainer, a run resumed half-way sees the same images and ends in the same state (slow).

    A checkpoint half-way, a fresh trainer that resumes from it: the image positions it sees (in range: labeled from
    the labeled set, unlabeled from the pool) and its final state, buffers and EMA included, are those of an
    uninterrupted run."""
    straight = tiny_trainer(name, steps)
    seen = _watch_indices(straight)
    straight.run()
    for idx_x, idx_u in seen:
        assert set(idx_x) <= set(range(BATCH)), f"labeled positions {idx_x} outside the labeled set 0..{BATCH - 1}"
        assert set(idx_u) <= set(range(BATCH, N_TINY)), f"unlabeled positions {idx_u} outside the pool"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt.pt"
        tiny_trainer(name, steps).run(ckpt, stop_at=steps // 2, resume=False)
        resumed = tiny_trainer(name, steps)
        assert resumed.resume(ckpt) and resumed.step == steps // 2
        seen_resumed = _watch_indices(resumed)
        resumed.run(resume=False)
    assert seen_resumed == seen[steps // 2 :], "a resumed run sees other image positions than an uninterrupted one"
    for what, a, b in (
        ("algorithm", straight.algorithm.state_dict(), resumed.algorithm.state_dict()),
        ("EMA", straight.ema.state_dict()["model"], resumed.ema.state_dict()["model"]),
    ):
        for k, v in a.items():
            assert torch.equal(v, b[k]), f"{what} state {k} differs after a resume"
    assert straight.history == resumed.history, "evaluations differ after a resume"


def check_learns(name: str, steps: int = 300) -> None:
    """On tiny separable data, training lowers the labeled loss and classifies the whole set (slow)."""
    parts = tiny_run(name)
    algo = parts.algorithm
    opt = torch.optim.SGD(algo.parameters(), lr=0.01, momentum=0.9)
    images, labels = tiny_data()
    labeled_losses: list[float] = []
    for s in range(steps):
        loss, metrics = algo.step(tiny_batch(parts, seed=s), s / steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        parts.ema.update(algo.model)  # the teacher follows, as in the trainer
        labeled_losses.append(float(metrics.get("loss/x", loss.detach())))  # ramped terms make the total loss grow
    first, last = labeled_losses[0], labeled_losses[-1]
    algo.eval()
    with torch.no_grad():
        acc = (algo.model(to_input(images)).argmax(1) == labels).float().mean().item()
    assert last < first, f"labeled loss did not decrease ({first:.3f} -> {last:.3f})"
    assert acc >= 0.9, f"accuracy {acc:.2f} on tiny separable data after {steps} steps"


Check = Callable[[str], None]  # takes an algorithm's name; raises AssertionError naming what failed
CHECKS: list[Check] = [
    check_config,
    check_finite,
    check_unlabeled_labels_unused,
    check_determinism,
    check_state_roundtrip,
    check_teacher_unchanged,
]
SLOW_CHECKS: list[Check] = [check_resume_through_trainer, check_learns]


def run_checks(name: str, checks: list[Check] | None = None) -> list[tuple[Check, str | None]]:
    """Run ``checks`` (default: ``CHECKS``) on algorithm ``name``: (check, None) for a pass, (check, one-line reason)
    for a failure. Every check runs, whatever the others gave."""
    out: list[tuple[Check, str | None]] = []
    for check in CHECKS if checks is None else checks:
        try:
            check(name)
        except Exception as exc:  # a failing check (AssertionError) or a crashing algorithm: both are failures
            text = " ".join(str(exc).split())
            out.append((check, f"{type(exc).__name__}: {text}" if text else type(exc).__name__))
        else:
            out.append((check, None))
    return out
