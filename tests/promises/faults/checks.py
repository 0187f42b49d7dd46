"""What the fault suite runs and checks: the CLI in a subprocess (optionally killed), records compared with an
uninterrupted run's, files left behind, and the outcome of each trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
# the metrics of a record that a resume must reproduce exactly (wall time, dates and speed may differ)
COMPARED = (
    "acc_history", "acc_median", "acc_final", "acc_raw_final", "steps", "images_seen", "config_hash", "split_hash",
    "round", "n_labels",
)  # fmt: skip
REQUIRED = ("algorithm", "acc_median", "config_hash", "split_hash", "acc_history")
PNG_END = b"IEND\xaeB`\x82"
# every process of the suite trains on one thread, so that all of them compute the same floating-point sums
ENV = {
    **{k: v for k, v in os.environ.items() if k != "SSL_BENCH_FAULT"},
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssl_bench.cli", *args]


def env_with(fault: str | None) -> dict[str, str]:
    return {**ENV, "SSL_BENCH_FAULT": fault} if fault else ENV


def run(args: list[str], log: Path, fault: str | None = None, timeout: float = 600) -> tuple[int, str]:
    """Run ``args`` to its end (``fault``: the value of SSL_BENCH_FAULT): (exit code, stderr), stderr also appended
    to ``log``."""
    proc = subprocess.run(
        args,
        cwd=ROOT,
        env=env_with(fault),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    with open(log, "a") as fh:
        fh.write(f"$ {'SSL_BENCH_FAULT=' + fault + ' ' if fault else ''}{' '.join(args[3:])}\n{proc.stderr}")
        fh.write(f"# exit {proc.returncode}\n")
    return proc.returncode, proc.stderr


def kill_when(
    args: list[str], log: Path, ready: Callable[[], bool], delay: float, poll: float = 0.001, timeout: float = 600
) -> bool:
    """Start ``args``, wait until ``ready()`` holds (asking every ``poll`` s), sleep ``delay`` s and SIGKILL it;
    True if it was still running then (False: it had ended by itself, the fault missed)."""
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(args[3:])}  # SIGKILL {delay:.3f} s after the trigger\n")
        fh.flush()
        proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=fh)
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and not ready() and time.monotonic() < deadline:
                time.sleep(poll)
            time.sleep(delay)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            proc.kill()
        fh.write(f"# {'killed' if alive else 'ended before the kill'}, exit {proc.returncode}\n")
    return alive


def checkpoint_step(results: Path) -> int | None:
    """The step of the run's checkpoint under ``results`` (None: there is none)."""
    import torch  # only here: the rest of the suite needs nothing but the standard library

    found = sorted((results / ".checkpoints").glob("*.pt"))
    return int(torch.load(found[0], map_location="cpu", weights_only=True)["step"]) if found else None


def record_files(results: Path) -> list[Path]:
    return sorted((results / "runs").rglob("*.json")) if (results / "runs").is_dir() else []


def load(path: Path) -> dict[str, Any] | None:
    """The record in ``path``, or None if it is not a complete record."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and all(k in rec for k in REQUIRED) else None


def key(rec: dict[str, Any]) -> tuple[str, int | None]:
    return rec["config_hash"], rec.get("round")


def metrics(rec: dict[str, Any]) -> str:
    return json.dumps([rec.get(k) for k in COMPARED])


def compare(results: Path, expected: dict[tuple[str, int | None], dict[str, Any]]) -> dict[str, list[str]]:
    """Problems of the records under ``results`` against ``expected`` (by config hash and round): lost, corrupt
    (not a parsable record), duplicated, differing in a compared metric, unexpected."""
    found: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    problems: dict[str, list[str]] = {"lost": [], "corrupt": [], "duplicate": [], "differ": [], "unexpected": []}
    for path in record_files(results):
        rec = load(path)
        if rec is None:
            problems["corrupt"].append(str(path))
        else:
            found.setdefault(key(rec), []).append(rec)
    for k, want in expected.items():
        got = found.get(k, [])
        if not got:
            problems["lost"].append(f"{k[0][:12]} round {k[1]}")
        elif len(got) > 1:
            problems["duplicate"].append(f"{k[0][:12]} round {k[1]} x{len(got)}")
        elif metrics(got[0]) != metrics(want):
            diff = [f for f in COMPARED if got[0].get(f) != want.get(f)]
            problems["differ"].append(f"{k[0][:12]} round {k[1]}: {', '.join(diff)}")
    problems["unexpected"] = [f"{k[0][:12]} round {k[1]}" for k in found if k not in expected]
    return problems


def leftovers(results: Path) -> list[str]:
    """Files a finished command must not leave: temp files, leaderboard staging folders, checkpoints."""
    out = [str(p.relative_to(results)) for p in results.rglob("*.tmp")]
    out += [str(p.relative_to(results)) for p in results.glob(".leaderboard-*")]
    out += [str(p.relative_to(results)) for p in results.glob(".checkpoints/*.pt")]
    return sorted(out)


def complete_pngs(results: Path) -> list[str]:
    """Top-level plots that are not complete PNG files."""
    return [p.name for p in sorted(results.glob("*.png")) if not p.read_bytes().endswith(PNG_END)]


def snapshot(results: Path, names: tuple[str, ...] = ("README.md", "index.html")) -> dict[str, bytes | None]:
    return {n: (results / n).read_bytes() if (results / n).exists() else None for n in names}


@dataclass
class Outcome:
    """What one trial (or check) found."""

    name: str
    injected: int = 0
    missed: int = 0
    identical: bool = False
    lost: int = 0
    corrupt: int = 0
    problems: list[str] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0


def account(out: Outcome, problems: dict[str, list[str]]) -> None:
    out.lost += len(problems["lost"])
    out.corrupt += len(problems["corrupt"])
    out.problems += [f"{kind}: {item}" for kind, items in problems.items() for item in items]


def new_checkpoint(results: Path) -> Callable[[], bool]:
    """A trigger: true once a checkpoint that was not there (or not as it was) when it was made exists."""

    def state() -> set[tuple[str, int]]:
        out = set()
        for p in (results / ".checkpoints").glob("*.pt"):
            try:
                out.add((p.name, p.stat().st_mtime_ns))
            except FileNotFoundError:  # removed by the run that finished it
                pass
        return out

    before = state()
    return lambda: bool(state() - before)


def timed(job) -> Outcome:
    t0 = time.monotonic()
    out = job()
    out.seconds = time.monotonic() - t0
    return out


def report(o: Outcome) -> None:
    status = "ok  " if o.identical else "FAIL"
    missed = f", {o.missed} missed" if o.missed else ""
    print(f"{status} {o.name}: {o.injected} fault(s){missed}, {o.note} ({o.seconds:.0f} s)", flush=True)
    for p in o.problems:
        print(f"       {p}", flush=True)
