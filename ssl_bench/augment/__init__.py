"""Augmentation policies as batched tensor ops with per-sample random parameters, and the views pipeline."""

from ssl_bench.augment.policies import Policy, create_policy, effective_flip
from ssl_bench.augment.views import Batch, ViewBuilder, ViewSpec

__all__ = ["Batch", "Policy", "ViewBuilder", "ViewSpec", "create_policy", "effective_flip"]
