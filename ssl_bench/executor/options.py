"""How a grid is executed: the options of ``ssl-bench run --executor ...`` and what every executor shares."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

from ssl_bench.errors import ConfigError

EXECUTORS = ("local", "ray")


@dataclass
class GridOptions:
    """How a grid is executed (``ssl-bench run --executor ...``)."""

    executor: str = "local"
    workers: int = 1
    address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001", ...); None starts a local Ray
    cpus_per_run: int | None = None  # None: this machine's cores / workers (local), 1 (ray)
    gpus_per_run: float = 0.0  # ray only; fractions let several small runs share one GPU
    retries: int = 1  # extra attempts of a failed run, each resuming from its last checkpoint


def check_options(opts: GridOptions) -> None:
    if opts.executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {opts.executor!r}")
    if opts.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {opts.workers}")
    if opts.cpus_per_run is not None and opts.cpus_per_run < 1:
        raise ConfigError(f"--cpus-per-run must be >= 1, got {opts.cpus_per_run}")
    g = opts.gpus_per_run
    if not math.isfinite(g) or g < 0 or (g and round(g, 4) != g):  # Ray keeps resource fractions to 0.0001
        raise ConfigError(f"--gpus-per-run must be a number >= 0 in steps of 0.0001 (e.g. 0.25), got {g}")
    if opts.retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {opts.retries}")
    if opts.executor == "local":
        if opts.address is not None:
            raise ConfigError("--address needs --executor ray")
        if opts.gpus_per_run:
            raise ConfigError("--gpus-per-run needs --executor ray (local runs use train.device)")
    if opts.address is not None:
        address_endpoint(opts.address)  # the form is checked before anything is planned


ADDRESS_FORMS = "auto, HOST:PORT (a cluster's GCS, as `ray start --head` prints it) or ray://HOST:PORT (Ray Client)"


def address_endpoint(address: str) -> tuple[str, int] | None:
    """The (host, port) that ``--address`` names, None for ``auto`` (Ray looks the cluster up itself)."""
    if address == "auto":
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address!r} is not {ADDRESS_FORMS}")
    return host.strip("[]"), int(port)


def threads_per_run(opts: GridOptions) -> int:
    if opts.cpus_per_run is not None:
        return opts.cpus_per_run
    if opts.executor == "ray":
        return 1
    return max(1, (os.cpu_count() or 1) // opts.workers)


def driver_path() -> list[str]:
    """This process's import path with its working directory spelled out, for tasks that start elsewhere."""
    return [os.getcwd() if entry == "" else entry for entry in sys.path]
