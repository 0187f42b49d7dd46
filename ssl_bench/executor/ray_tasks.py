"""``--executor ray``: every pending run is a Ray task, on a local Ray started on demand (no dashboard) or on the
cluster at ``--address``. A task asks for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (fractions let several
small runs share one GPU; Ray sets each task's CUDA_VISIBLE_DEVICES), at most ``workers`` are in flight, and a
failed task (exception, killed worker, lost node) is resubmitted up to ``retries`` times; it resumes from its
checkpoint, so the results directory must be one filesystem that every node sees.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_bench.errors import ConfigError, one_line
from ssl_bench.executor.options import GridOptions, address_endpoint, driver_path, threads_per_run
from ssl_bench.executor.progress import GridProgress, Ledger
from ssl_bench.executor.worker import work
from ssl_bench.plan import PlannedRun
from ssl_bench.runner import Outcome, quiet


def start_ray(address: str | None, log: Callable[[str], None]):
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'ssl_bench[ray]' (or pip install ray)") from None
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "WARNING"}
    if address is None:
        log("starting a local Ray (no dashboard)")
        ray.init(**kwargs)
        return ray, True
    check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        if address == "auto":
            raise ConfigError(
                "--address auto: no running Ray cluster found from this machine (start one with `ray start --head`, "
                "or leave --address out for a local Ray)"
            ) from None
        raise ConfigError(f"--address {address}: {one_line(exc)}{auth_hint()}") from None
    return ray, True


def auth_hint() -> str:
    """Why an explicit address may refuse a driver that reaches it: Ray sends its token only where RAY_AUTH_MODE
    says so (it does that by itself for ``auto`` alone), and ``ray start --head`` turns token authentication on."""
    import os

    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return (
        "; a cluster with token authentication (what `ray start --head` sets up unless RAY_AUTH_MODE=disabled) "
        "takes an explicit address only with RAY_AUTH_MODE=token and its token here (`ray get-auth-token` on the "
        "head node, as ~/.ray/auth_token or RAY_AUTH_TOKEN), or use --address auto on a node of the cluster"
    )


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A refused or unreachable ``--address`` is an error now: Ray itself would retry it for minutes."""
    import socket

    endpoint = address_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"--address {address}: no Ray cluster answers at {endpoint[0]}:{endpoint[1]} ({reason.lower()}); start "
            "one with `ray start --head`, or leave --address out for a local Ray"
        ) from None


def check_fits(ray, cpus: int, gpus: float, address: str | None, log: Callable[[str], None]) -> None:
    """A task that no node can hold waits for ever: on a local Ray that is an error; on a cluster a warning, since
    an autoscaler may yet add such a node."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        return
    need = f"{cpus} CPU(s)" + (f" and {gpus:g} GPU(s)" if gpus else "")
    most = f"{max((r.get('CPU', 0) for r in nodes), default=0):g} CPU(s)"
    most += f" and {max((r.get('GPU', 0) for r in nodes), default=0):g} GPU(s)"
    if address is None:
        raise ConfigError(
            f"each run asks for {need} (--cpus-per-run, --gpus-per-run), but this machine's Ray has {most}: "
            "no run could start"
        )
    log(f"ssl-bench: warning: no node of the cluster has {need} now (the largest: {most}); runs wait for one")


def run_on_ray(
    planned: list[PlannedRun], results_dir: Path, opts: GridOptions, log: Callable[[str], None]
) -> list[Outcome]:
    ray, started = start_ray(opts.address, log)
    threads = threads_per_run(opts)
    running: dict[object, PlannedRun] = {}
    progress = None
    try:
        check_fits(ray, threads, opts.gpus_per_run, opts.address, log)
        task = ray.remote(num_cpus=threads, num_gpus=opts.gpus_per_run, max_retries=0)(work)
        progress = GridProgress(len(planned), log)
        ledger = Ledger([quiet(p) for p in planned], opts.retries, progress)
        while ledger.queue or running:
            while ledger.queue and len(running) < opts.workers:
                p = ledger.start()
                running[task.remote(p, str(results_dir.resolve()), driver_path(), threads)] = p
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                p = running.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died, its node was lost, ...
                    out = Outcome(p.tag, p.config_hash, "failed", one_line(exc))
                ledger.settle(p, out)
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
        if progress is not None:
            progress.close()
        if started:
            ray.shutdown()
    return ledger.outcomes
