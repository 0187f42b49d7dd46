"""Views: an algorithm declares which augmented copies it needs; the pipeline builds them on the model's device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from ssl_bench.augment.policies import Policy
from ssl_bench.errors import ConfigError

# the augmentation role of one view: a config field naming a role is typed Role, so the choices live here once
Role = Literal["weak", "strong", "none"]
ROLES: tuple[str, ...] = get_args(Role)


@dataclass(frozen=True)
class ViewSpec:
    """Augmentation roles per labeled and per unlabeled image, and unlabeled images per labeled image (mu)."""

    labeled: tuple[str, ...] = ("weak",)
    unlabeled: tuple[str, ...] = ()
    uratio: int = 0

    def __post_init__(self) -> None:
        for role in (*self.labeled, *self.unlabeled):
            if role not in ROLES:
                raise ConfigError(f"unknown view role {role!r}; valid: {', '.join(ROLES)}")
        if bool(self.unlabeled) != (self.uratio > 0):
            raise ConfigError("unlabeled views need uratio > 0 and uratio > 0 needs unlabeled views")


@dataclass
class Batch:
    """One training step's inputs: float images in [-1, 1] on the model's device.

    ``x[i]`` is the i-th labeled view and ``y`` its labels; ``u[i]`` is the i-th unlabeled view. There is no
    field for unlabeled labels: an algorithm cannot read them. In the ssda setting, an algorithm that declares
    ``separate_target_labels`` gets the labeled target images apart (``x_target[i]``, ``y_target``); for every other
    algorithm they are appended to ``x`` and ``y``.

    ``idx_x``, ``idx_u`` and ``idx_target`` (int64, on the same device) are the positions in the training set of the
    images of ``x``, ``u`` and ``x_target``, row for row: stable for the whole run, so per-image state can be kept
    in a buffer indexed by them (``Algorithm.data.n_train`` entries). Positions, never labels.
    """

    x: tuple[torch.Tensor, ...]
    y: torch.Tensor
    u: tuple[torch.Tensor, ...] = ()
    x_target: tuple[torch.Tensor, ...] = ()
    y_target: torch.Tensor | None = None
    idx_x: torch.Tensor | None = None
    idx_u: torch.Tensor | None = None
    idx_target: torch.Tensor | None = None


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the reference's x * 2/255 - 1
    (docs/reference/common.md#image-encoding-and-datasets)."""
    return images.float().mul_(2.0 / 255.0).sub_(1.0)


class ViewBuilder:
    """Gathers images by index from a device-resident uint8 tensor and applies each view's policy, batched."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        spec: ViewSpec,
        policies: dict[str, Policy],
        generator: torch.Generator,
    ) -> None:
        self.images, self.labels, self.spec = images, labels, spec
        self.policies, self.generator = policies, generator

    def _views(self, idx: torch.Tensor, roles: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
        raw = self.images[idx]
        return tuple(to_input(self.policies[role](raw, self.generator)) for role in roles)

    def build(
        self,
        labeled_idx: torch.Tensor,
        unlabeled_idx: torch.Tensor | None,
        target_idx: torch.Tensor | None = None,
        separate_target: bool = False,
    ) -> Batch:
        """Views of one step; ``target_idx`` (ssda) are labeled target images, kept apart if ``separate_target``."""
        device = self.images.device
        labeled_idx = labeled_idx.to(device, non_blocking=True)
        if target_idx is not None and not separate_target:
            labeled_idx = torch.cat([labeled_idx, target_idx.to(device, non_blocking=True)])
            target_idx = None
        x = self._views(labeled_idx, self.spec.labeled)
        y = self.labels[labeled_idx]
        u: tuple[torch.Tensor, ...] = ()
        if self.spec.uratio:
            assert unlabeled_idx is not None
            unlabeled_idx = unlabeled_idx.to(device, non_blocking=True)
            u = self._views(unlabeled_idx, self.spec.unlabeled)
        else:
            unlabeled_idx = None
        if target_idx is None:
            return Batch(x=x, y=y, u=u, idx_x=labeled_idx, idx_u=unlabeled_idx)
        target_idx = target_idx.to(device, non_blocking=True)
        x_target = self._views(target_idx, self.spec.labeled)
        return Batch(
            x=x,
            y=y,
            u=u,
            x_target=x_target,
            y_target=self.labels[target_idx],
            idx_x=labeled_idx,
            idx_u=unlabeled_idx,
            idx_target=target_idx,
        )
