"""The pipelines that ``ssl-bench bench train`` times, each in a process of its own, driven one step at a time.

The trainer's steps are ``Trainer.train_step`` itself (the code path of ``ssl-bench run``) with a clock attached
that marks the end of its phases: data/augmentation, CTAugment probes, model/optimizer (forward, backward,
optimizer, EMA); on CUDA the clock synchronises the device at each mark. The peer-style pipeline is
``ssl_bench.benchmarks.reference``. A process per pipeline, spawned once, means that no pipeline inherits another's
threads, allocator settings or memory peak.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import torch

from ssl_bench.benchmarks.reference import ReferencePipeline
from ssl_bench.config import RunConfig
from ssl_bench.data import load_data
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.splits import Split, get_run_split
from ssl_bench.devices import resolve_device
from ssl_bench.errors import SSLBenchError
from ssl_bench.identity import run_hash
from ssl_bench.plugins import import_plugins
from ssl_bench.train import Trainer

PHASES = ("data", "probes", "model")


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

    def __init__(self, run: RunConfig, ds: ImageDataset, split: Split) -> None:
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


def _serve(conn, pipeline: str, run: RunConfig, plugins: list[str], workers: int, label: str) -> None:
    """A pipeline's process: build it, then answer ("steps", n) with n steps' phase times, ("stats",) with its
    counters since the last ("stats",), ("stop",) by exiting. Errors are sent back as ("error", one-line text)."""
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
            elif msg[0] == "stats":  # the counters of the timed steps since the last ("stats",)
                peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak RSS
                if device.type == "cuda":
                    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
                conn.send(("stats", {"faults": faults, "sys_s": sys_s, "user_s": user_s, "peak_mb": peak_mb}))
                faults = sys_s = user_s = 0.0
            else:
                return
    except Exception as exc:  # reported in the parent as a one-line error
        text = " ".join(str(exc).split())
        conn.send(("error", f"{label} pipeline: {type(exc).__name__}: {text}"))


class Child:
    """One pipeline's process, seen from the parent. ``label`` names it in progress lines and errors; ``pause``
    seconds are slept after each of its steps (the reference's DataLoader workers finish prefetching then, rather
    than during the next pipeline's step)."""

    def __init__(
        self, ctx, pipeline: str, run: RunConfig, plugins: list[str], workers: int, label: str = "", pause: float = 0.0
    ) -> None:
        self.name, self.pause = label or pipeline, pause
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, pipeline, run, plugins, workers, self.name), daemon=False)
        self.proc.start()
        self.info = self.ask()

    def step(self, timed: bool) -> dict[str, float]:
        """One step's phase times in seconds (``timed``: its page faults and CPU time count in ``stats``)."""
        (phases,) = self.ask("steps", 1, timed)
        if self.pause:
            time.sleep(self.pause)
        return phases

    def stats(self) -> dict[str, float]:
        return self.ask("stats")

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
