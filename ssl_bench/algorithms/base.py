"""The algorithm interface: an nn.Module that declares its views and turns one batch into a loss
(docs/adding-an-algorithm.md#rules).

Besides the batch, an algorithm may read what it is trained on (``data``: set sizes and labeled class counts), the
dataset positions of its images (``batch.idx_x``, ``batch.idx_u``), the predictions of the trainer's EMA weights
(``teacher``), and the processes that train the run together (``ranks``).
docs/adding-an-algorithm.md#adding-an-algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ssl_bench.algorithms.functional import frozen_bn_stats
from ssl_bench.augment.views import Batch, ViewSpec


@dataclass(frozen=True)
class AlgorithmConfig:
    """Base of every algorithm's config; subclasses add hyper-parameters, each default citing its source, and
    declare each one's rule beside it, checked when a recipe is read (``config_checks``): the interval a number
    must lie in, ``tau: Annotated[float, Range("[0, 1]")] = 0.9``, and a choice, ``variant: Literal["a", "b"]``."""

    name: str = ""


@dataclass(frozen=True)
class DataInfo:
    """What a run trains on, as far as an algorithm may know it (never an unlabeled label).

    ``batch.idx_x`` and ``batch.idx_u`` are positions in the training set, in ``[0, n_train)``: the same image has
    the same position for the whole run, across resumes and active-learning rounds. ``n_labeled`` and
    ``labeled_counts`` (images per class) describe the labeled set, labeled target images of the ssda setting
    included; ``n_unlabeled`` is the size of the unlabeled pool the unlabeled batches are drawn from.
    """

    num_classes: int
    n_train: int
    n_labeled: int
    n_unlabeled: int
    labeled_counts: tuple[int, ...]

    @classmethod
    def unknown(cls, num_classes: int) -> DataInfo:
        """For an algorithm built by hand, outside a run: no images known."""
        return cls(num_classes, 0, 0, 0, (0,) * num_classes)


class Ranks:
    """Collectives over the processes that train one run together (torchrun, train/distributed.py). On one process,
    as here, each returns its input. Inputs are treated as constants (no gradient flows through a collective): use
    them for statistics and state updates, so that every rank holds the state one process would hold."""

    world: int = 1

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``t`` over the ranks."""
        return t

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise mean of ``t`` over the ranks: the global-batch mean of a per-rank batch mean."""
        return t

    def cat(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's ``t`` (the same shape on each) concatenated along dim 0 in rank order: the global batch's."""
        return t


class Algorithm(nn.Module):
    """Holds the backbone (``self.model``) and its frozen config; does no optimizer, device, logging or data work.

    Subclasses set ``Config`` and implement ``views`` and ``step``. Running and per-image state (e.g.
    distribution-alignment averages, one entry per training image indexed by ``batch.idx_u``) must be registered
    buffers, sized in ``__init__`` from ``data``, so that checkpoints hold it and a resumed run continues exactly.
    A subclass that overrides ``__init__`` takes ``(model, cfg, num_classes, data=None)`` and passes all four on.
    For the type checker, a subclass annotates ``cfg`` with its ``Config`` and each buffer as a ``torch.Tensor``
    (``cfg: FixMatchConfig``, ``p_model: torch.Tensor``): neither is known from ``__init__`` alone.
    """

    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    # ssda: True = labeled target images arrive apart in batch.x_target / y_target; False = appended to x / y
    separate_target_labels: ClassVar[bool] = False
    # settings the step is written for (data.setting); the runner refuses the others before training
    settings: ClassVar[tuple[str, ...]] = ("ssl", "uda", "ssda")
    # True = the step may run split across processes (train/distributed.py): every loss is a mean of per-image
    # terms, and every statistic of the whole batch goes through ``self.ranks``, so that the run matches one process
    # on the global batch. False refuses, naming ``not_split_because``.
    data_parallel: ClassVar[bool] = False
    not_split_because: ClassVar[str] = "it does not declare that its step splits across processes (data_parallel)"
    _teacher_model: nn.Module | None  # set with object.__setattr__: not a submodule

    def __init__(self, model: nn.Module, cfg: AlgorithmConfig, num_classes: int, data: DataInfo | None = None) -> None:
        super().__init__()
        self.model, self.cfg, self.num_classes = model, cfg, num_classes
        self.data = data if data is not None else DataInfo.unknown(num_classes)
        self.ranks = Ranks()
        object.__setattr__(self, "_teacher_model", None)  # not a submodule: the EMA belongs to the trainer

    def views(self) -> ViewSpec:
        raise NotImplementedError

    def step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Loss of one step and named metrics (``loss/x``, ``loss/u``, ``monitor/mask``...); progress in [0, 1)."""
        raise NotImplementedError

    def set_data(self, data: DataInfo) -> None:
        """Called when the labeled set changes during the run (active learning); ``data`` describes the new sets."""
        self.data = data

    def bind_teacher(self, model: nn.Module) -> None:
        """The trainer's EMA model, which ``teacher`` runs (``train.build.build_run`` binds it)."""
        object.__setattr__(self, "_teacher_model", model)

    @torch.no_grad()
    def teacher(self, images: torch.Tensor, batch_stats: bool = True) -> torch.Tensor:
        """Logits of the teacher: the EMA of the weights as it stood before this step's update (the trainer updates
        it after the optimizer step), without gradient, leaving the EMA exactly as it was.

        ``batch_stats=True`` normalises with this batch's BatchNorm statistics (training mode; the running
        statistics are left untouched), as the TF Mean Teacher does; ``False`` uses the running statistics
        (inference mode), as evaluation does.
        """
        model = self._teacher_model
        if model is None:
            raise RuntimeError(f"{type(self).__name__} has no teacher: build it with train.build.build_run")
        if not batch_stats:
            return model(images)
        was_training = model.training
        model.train()
        try:
            with frozen_bn_stats(model):
                return model(images)
        finally:
            model.train(was_training)
