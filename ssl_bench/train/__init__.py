"""Training: a run's parts built in one place (``build``), what each step is fed (``feed``), how the weights move
(``optim``), the speed switches per device (``switches``), the checkpoint format (``checkpoint``) and the one loop
with evaluation (``trainer``)."""

from ssl_bench.train.build import RunParts, build_run
from ssl_bench.train.trainer import Trainer, evaluate, median_last

__all__ = ["RunParts", "Trainer", "build_run", "evaluate", "median_last"]
