"""Training: a run's parts built in one place (``build``), what each step is fed (``feed``), how the weights move
(``optim``) and the one loop with checkpoints and evaluation (``trainer``)."""

from ssl_bench.train.build import RunParts, build_run
from ssl_bench.train.trainer import Trainer, evaluate, median_last

__all__ = ["RunParts", "Trainer", "build_run", "evaluate", "median_last"]
