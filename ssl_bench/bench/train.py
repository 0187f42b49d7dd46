"""``ssl-bench bench train``: real training steps of the project's trainer, timed after warm-up, optionally in
turns with the peer-style pipeline of ``ssl_bench.bench.reference``.

The trainer's steps are ``Trainer.train_step`` itself (the code path of ``ssl-bench run``) with a clock attached
that marks the end of its phases: data/augmentation, CTAugment probes, model/optimizer (forward, backward,
optimizer, EMA); on CUDA the clock synchronises the device at each mark. Each pipeline runs in a process of its
own, spawned once and driven one step at a time in alternation, so neither inherits the other's threads, allocator
settings or memory peak, and a slow phase of the machine hits both.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ssl_bench.bench.reference import ReferencePipeline, check_reference
from ssl_bench.config import RunConfig, run_hash
from ssl_bench.data import load_data
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.splits import DASplit, Split, get_run_split
from ssl_bench.errors import SSLBenchError
from ssl_bench.plugins import import_plugins
from ssl_bench.train import Trainer
from ssl_bench.utils import resolve_device

PHASES = ("data", "probes", "model")
# the default of ``ssl-bench bench train``: a paper-scale FixMatch step (64 labeled + 7 x 64 unlabeled x 2 views of
# 32x32 RGB images through WRN-28-2, RandAugment), on random images so that no dataset files are needed
DEFAULT_RECIPE: dict[str, Any] = {
    "name": "bench-train",
    "grid": {"n_labels": [250], "seeds": [1]},
    "data": {"dataset": "synthetic"},
    "model": {"name": "wrn28", "width": 2},
    "algorithm": {"name": "fixmatch"},
    "augment": {"strong": "randaugment"},
    "train": {"batch_size": 64},
}


class PhaseClock:
    """Seconds spent in each phase of the current step (``Trainer.clock``)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start()

    def start(self) -> None:
        self._sync()
        self.phases = dict.fromkeys(PHASES, 0.0)
        self.last = time.perf_counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def lap(self, phase: str) -> None:
        self._sync()
        now = time.perf_counter()
        self.phases[phase] += now - self.last
        self.last = now


class OursPipeline:
    """The trainer of ``run``, one ``train_step`` at a time."""

    def __init__(self, run: RunConfig, ds: ImageDataset, split: Split | DASplit) -> None:
        self.trainer = Trainer(run, ds, split, run_hash(run))
        self.clock = PhaseClock(self.trainer.device)
        self.trainer.clock = self.clock
        spec = self.trainer.feed.spec
        b = run.train.batch_size
        target = b * len(spec.labeled) if self.trainer.feed.labeled_target is not None else 0
        self.images_per_step = b * len(spec.labeled) + target + b * spec.uratio * len(spec.unlabeled)
        self.speed = self.trainer.speed.as_record()

    def step(self) -> dict[str, float]:
        self.clock.start()
        self.trainer.train_step()
        return dict(self.clock.phases)


def _serve(conn, pipeline: str, run: RunConfig, plugins: list[str], workers: int) -> None:
    """A pipeline's process: build it, then answer ("steps", n) with n steps' phase times, ("stats",) with its
    counters, ("stop",) by exiting. Errors are sent back as ("error", one-line text)."""
    try:
        import_plugins(plugins)
        ds = load_data(run.data)
        split = get_run_split(ds, run.data, run.seed, None)
        device = resolve_device(run.train.device)
        if pipeline == "ours":
            pipe: OursPipeline | ReferencePipeline = OursPipeline(run, ds, split)
        else:
            pipe = ReferencePipeline(run, ds, split, device, workers)
        info = {"images_per_step": pipe.images_per_step, "speed": pipe.speed}
        conn.send(("ready", info))
        faults = sys_s = user_s = 0.0
        while True:
            msg = conn.recv()
            if msg[0] == "steps":
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                times = [pipe.step() for _ in range(msg[1])]
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                if msg[2]:  # timed: count the process's page faults and CPU time too
                    faults += r1.ru_minflt - r0.ru_minflt
                    sys_s += r1.ru_stime - r0.ru_stime
                    user_s += r1.ru_utime - r0.ru_utime
                conn.send(("times", times))
            elif msg[0] == "stats":
                peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak RSS
                if device.type == "cuda":
                    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
                conn.send(("stats", {"faults": faults, "sys_s": sys_s, "user_s": user_s, "peak_mb": peak_mb}))
            else:
                return
    except Exception as exc:  # reported in the parent as a one-line error
        text = " ".join(str(exc).split())
        conn.send(("error", f"{pipeline} pipeline: {type(exc).__name__}: {text}"))


class _Child:
    def __init__(self, ctx, pipeline: str, run: RunConfig, plugins: list[str], workers: int) -> None:
        self.name = pipeline
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, pipeline, run, plugins, workers), daemon=False)
        self.proc.start()
        self.info = self.ask()

    def ask(self, *msg: Any) -> Any:
        if msg:
            self.conn.send(msg)
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise SSLBenchError(f"the {self.name} pipeline's process died (exit code {self.proc.exitcode})") from None
        if kind == "error":
            raise SSLBenchError(payload)
        return payload

    def close(self) -> None:
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()


def summarize(times: list[dict[str, float]], info: dict, stats: dict) -> dict[str, Any]:
    totals = [sum(t.values()) for t in times]
    median = statistics.median(totals)
    wall = sum(totals)
    return {
        "steps_timed": len(times),
        "ms_per_step": 1000 * median,
        "steps_per_s": 1 / median,
        "images_per_s": info["images_per_step"] / median,
        "images_per_step": info["images_per_step"],
        "ms": {p: 1000 * statistics.median(t[p] for t in times) for p in PHASES},
        "peak_mb": stats["peak_mb"],
        "minor_faults_per_step": stats["faults"] / len(times),
        "sys_pct": 100 * stats["sys_s"] / wall,
        "cpu_pct": 100 * (stats["sys_s"] + stats["user_s"]) / wall,
        "speed": info["speed"],
        "step_ms": [1000 * t for t in totals],
    }


def bench_train(
    run: RunConfig,
    plugins: list[str],
    steps: int,
    warmup: int,
    reference: bool,
    workers: int,
    settle: float = 0.5,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Time ``steps`` steps per pipeline after ``warmup`` untimed ones, alternating one step at a time between
    ours and (with ``reference``) the peer-style pipeline, which gets ``settle`` seconds after each of its steps
    for its workers' prefetching to finish before the next turn of ours. ``log`` gets a line after the warm-up and
    after each round of timed steps (a CPU step of the default recipe takes seconds)."""
    if reference:
        check_reference(run)
    ctx = multiprocessing.get_context("spawn")
    children = [_Child(ctx, "ours", run, plugins, workers)]
    try:
        if reference:
            children.append(_Child(ctx, "reference", run, plugins, workers))
        took = {}
        for child in children:
            start = time.perf_counter()
            child.ask("steps", warmup, False)
            took[child.name] = time.perf_counter() - start
        if warmup:
            log(f"warm-up ({warmup} step(s) each): " + ", ".join(f"{n} {t:.1f} s" for n, t in took.items()))
        times: dict[str, list] = {c.name: [] for c in children}
        for i in range(steps):
            for child in children if i % 2 == 0 else children[::-1]:
                times[child.name] += child.ask("steps", 1, True)
                if child.name == "reference":
                    time.sleep(settle)
            step_s = ", ".join(f"{c.name} {sum(times[c.name][-1].values()):.2f} s" for c in children)
            log(f"timed step {i + 1}/{steps}: {step_s}")
        out: dict[str, Any] = {
            "algorithm": run.algorithm.name,
            "dataset": run.dataset,
            "model": run.model.name,
            "model_width": run.model.width,
            "batch_size": run.train.batch_size,
            "device": str(resolve_device(run.train.device)),
            "warmup_steps": warmup,
            "torch": torch.__version__,
            "config": run.to_dict(),
            "pipelines": {c.name: summarize(times[c.name], c.info, c.ask("stats")) for c in children},
        }
        if reference:
            ours, ref = out["pipelines"]["ours"], out["pipelines"]["reference"]
            out["ratio"] = ours["steps_per_s"] / ref["steps_per_s"]
        return out
    finally:
        for child in children:
            child.close()
