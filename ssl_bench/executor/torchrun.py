"""Under ``torchrun --nproc_per_node N -m ssl_bench.cli run RECIPE``: every process plans the same runs, joins
the process group and trains each run in turn on all ranks (``train/distributed.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ssl_bench.config import RecipeConfig
from ssl_bench.devices import resolve_device
from ssl_bench.errors import ConfigError
from ssl_bench.executor.options import GridOptions
from ssl_bench.leaderboard import brief
from ssl_bench.plan import plan
from ssl_bench.runner import run_planned
from ssl_bench.train.distributed import Dist, backend_for


def run_distributed(recipes: list[RecipeConfig], results_dir: Path, opts: GridOptions, dist: Dist) -> int:
    """Under torchrun: every rank plans the same runs, joins the process group and trains each run in turn (README,
    "Grids and many processes"); rank 0 logs, writes records and the leaderboard."""
    if opts.executor != "local" or opts.workers != 1:
        raise ConfigError("under torchrun each run trains on all its processes: --executor and --workers do not apply")
    planned = [p for recipe in recipes for p in plan(recipe, results_dir, world=dist.world)]
    devices = {resolve_device(p.run.train.device).type for p in planned}
    if len(devices) > 1:
        raise ConfigError("under torchrun every run of the invocation must train on one device type (cpu or cuda)")
    device = torch.device(devices.pop() if devices else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(dist.local_rank)
    dist.init(backend_for(device))
    try:
        log = (lambda s: print(s, file=sys.stderr)) if dist.is_main else (lambda s: None)
        run_planned(planned, results_dir, log=log, dist=dist)
        dist.barrier()
        if dist.is_main:
            print(brief(results_dir), end="")
    finally:
        dist.close()
    return 0
