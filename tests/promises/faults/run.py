"""The fault suite (``make test-faults``): SIGKILLs at seeded random points, disk-full writes and concurrent writers,
through the real ``ssl-bench`` command; nothing may be lost, corrupted, left behind or computed differently.

Kills land mid-step (a random time while training), during a checkpoint write and during a record write (the
test-only hook ``SSL_BENCH_FAULT`` of ``ssl_bench/fault_hook.py`` kills the process half-way through the n-th such
write), during ``ssl-bench leaderboard``, during an active-learning run and during a domain-adaptation run. After
each kill the same command is run again, and its records must equal an uninterrupted run's in every metric
(``checks.COMPARED``); a killed leaderboard must leave the previous or the new README.md and index.html, never a
partial one, and nothing behind once a later generation ran. Every trial's random choices come from one master
seed, so a failing trial can be re-run alone:

    python tests/promises/faults/run.py [--seed N] [--only 7,disk-full,concurrency] [--jobs 2] [--keep]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# run as a script: its folder is on sys.path
from checks import (
    ENV,
    ROOT,
    Outcome,
    account,
    checkpoint_step,
    cli,
    compare,
    complete_pngs,
    key,
    kill_when,
    leftovers,
    load,
    new_checkpoint,
    record_files,
    report,
    run,
    snapshot,
    timed,
)

MASTER_SEED = 20240611
MIN_FAULTS = 30
EVERY_10 = ["--set", "train.eval_every=10", "--set", "train.checkpoint_every=10"]
COMMANDS = {
    # 100 steps: checkpoints at 10, 20, ..., 90 (the last step is never checkpointed), one record
    "smoke": ["recipes/smoke.toml", "--set", "train.steps=100", *EVERY_10],
    # rounds end at steps 20, 40, 60 (20 -> 30 -> 40 labels): 7 checkpoint writes (one after each acquisition)
    # and 3 records; .aug scores draw from the training generator, the hardest case for an exact resume
    "active": [
        "recipes/digits/active.toml", "--set", "grid.seeds=[1]", "--set", "active.acquisitions=['diff2.aug-direct']",
        "--set", "active.first_interval=20", "--set", "active.interval=20", "--set", "active.final=40",
        "--set", "train.batch_size=16", "--set", "train.lr=0.1", *EVERY_10,
    ],
    # AdaMatch digits -> digits_m, ssda-1, 40 steps: checkpoints at 10, 20, 30, one record
    "da": [
        "recipes/da/digits_m/adamatch.toml", "--set", "grid.seeds=[1]", "--set", "grid.target_labels=[1]",
        "--set", "train.steps=40", "--set", "train.batch_size=8", "--set", "train.median_k=3", *EVERY_10,
    ],
    # 4 runs (2 budgets x 2 seeds) for the concurrent writers
    "grid": ["recipes/smoke.toml", "--set", "grid.seeds=[1,2]", "--set", "grid.n_labels=[40,60]", *EVERY_10],
}  # fmt: skip
STEPS = {"smoke": 100, "active": 60, "da": 40}  # training steps of each command (active: its whole schedule)
CHECKPOINT_WRITES = {"smoke": 9, "active": 7, "da": 3}
RECORD_WRITES = {"smoke": 1, "active": 3, "da": 1}
WRITERS = 4


def command(name: str, results: Path) -> list[str]:
    return cli("run", *COMMANDS[name], "--results-dir", str(results), "--quiet")


@dataclass
class Trial:
    """One trial: ``faults`` injected one after another into runs of ``command``, then a clean re-run.

    A fault is ("time", u): SIGKILL u x (the reference's training time) after the process wrote its first
    checkpoint;
    ("hook", spec): SSL_BENCH_FAULT=spec; ("leaderboard", phase, u): SIGKILL of ``ssl-bench leaderboard``.
    """

    index: int
    kind: str
    command: str
    faults: list[tuple[Any, ...]]


def plan(seed: int) -> list[Trial]:
    rng = random.Random(seed)
    trials: list[Trial] = []

    def add(kind: str, name: str, *faults: tuple[Any, ...]) -> None:
        trials.append(Trial(len(trials) + 1, kind, name, list(faults)))

    def at_random() -> tuple[str, float]:
        return ("time", round(rng.uniform(0.0, 0.9), 3))

    def checkpoint_kills(name: str, k: int) -> list[tuple[str, str]]:
        # a process killed at its n-th checkpoint write leaves n - 1 complete ones: the resumed process writes the
        # rest again, counting from 1
        left, out = CHECKPOINT_WRITES[name], []
        for _ in range(k):
            n = rng.randint(1, left)
            out.append(("hook", f"checkpoint:{n}"))
            left -= n - 1
        return out

    # each trial injects two or three faults one after the other (a resume is killed too), then re-runs cleanly
    for _ in range(3):
        add("mid-step", "smoke", at_random(), at_random(), at_random())
    for _ in range(2):
        add("checkpoint", "smoke", *checkpoint_kills("smoke", 3))
    add("record", "smoke", at_random(), ("hook", "record:1"))
    add("record", "smoke", at_random(), ("hook", "record:1"))
    add("record", "smoke", *checkpoint_kills("smoke", 1), ("hook", "record:1"))
    for phases in (("any", "staging", "moving"), ("moving", "any", "staging")):
        add("leaderboard", "leaderboard", *[("leaderboard", phase, round(rng.random(), 3)) for phase in phases])
    # active learning: checkpoint writes 3 and 6 are the saves right after an acquisition (the round log is
    # written); rounds 0, 1, 2 are recorded after writes 2, 5 and 7, and a resumed process records those left
    add("active", "active", ("hook", f"checkpoint:{rng.choice([3, 6])}"), at_random(), at_random())
    m = rng.randint(1, CHECKPOINT_WRITES["active"])
    recorded = 0 if m <= 2 else 1 if m <= 5 else 2
    add("active", "active", ("hook", f"checkpoint:{m}"), ("hook", f"record:{rng.randint(1, 3 - recorded)}"))
    add("da", "da", *checkpoint_kills("da", 2), at_random())
    add("da", "da", at_random(), ("hook", "record:1"))
    return trials


@dataclass
class References:
    """What uninterrupted commands produced, once per distinct command."""

    records: dict[str, dict[tuple[str, int | None], dict[str, Any]]] = field(default_factory=dict)
    train_s: dict[str, float] = field(default_factory=dict)  # the training alone
    wall_s: dict[str, float] = field(default_factory=dict)  # the whole command, leaderboard included
    lb_before: Path | None = None  # records of smoke + da and the old generation (of smoke's record only)
    lb_old: dict[str, bytes | None] = field(default_factory=dict)
    lb_new: dict[str, bytes | None] = field(default_factory=dict)
    lb_s: float = 0.0


def reference_run(name: str, work: Path) -> tuple[int, float]:
    t0 = time.monotonic()
    rc = run(command(name, work / f"ref-{name}"), work / f"ref-{name}.log")[0]
    return rc, time.monotonic() - t0


def references(work: Path, names: list[str], jobs: int) -> References:
    refs = References()
    with ThreadPoolExecutor(jobs) as pool:
        codes = dict(zip(names, pool.map(lambda n: reference_run(n, work), names), strict=True))
    for name in names:
        rc, refs.wall_s[name] = codes[name]
        if rc != 0:
            raise SystemExit(f"the uninterrupted {name} run failed (exit {rc}): see {work}/ref-{name}.log")
        recs = [load(p) for p in record_files(work / f"ref-{name}")]
        refs.records[name] = {key(r): r for r in recs if r is not None}
        refs.train_s[name] = max(r["wall_s"] for r in refs.records[name].values())
    if {"smoke", "da"} <= set(names):
        before = work / "ref-leaderboard-before"
        shutil.copytree(work / "ref-smoke", before, ignore=shutil.ignore_patterns(".locks"))
        shutil.copytree(work / "ref-da" / "runs", before / "runs", dirs_exist_ok=True)
        for png in before.glob("*.png"):  # else the new generation copies the plots the DA records leave as they
            png.unlink()  # were (plots.Plot), and no kill would land while matplotlib draws
        after = work / "ref-leaderboard-after"
        shutil.copytree(before, after)
        t0 = time.monotonic()
        if run(cli("leaderboard", "--results-dir", str(after)), work / "ref-leaderboard.log")[0] != 0:
            raise SystemExit(f"the uninterrupted leaderboard failed: see {work}/ref-leaderboard.log")
        refs.lb_s = time.monotonic() - t0
        refs.lb_before, refs.lb_old, refs.lb_new = before, snapshot(before), snapshot(after)
        if refs.lb_old == refs.lb_new:
            raise SystemExit(
                "the old and new leaderboard generations are equal: the leaderboard trials would prove nothing"
            )
    return refs


def train_trial(t: Trial, work: Path, refs: References) -> Outcome:
    out = Outcome(f"[{t.index:02d}] {t.kind} ({t.command})")
    results, log = work / f"t{t.index:02d}", work / f"t{t.index:02d}.log"
    cmd = command(t.command, results)
    states = []
    for fault in t.faults:
        if fault[0] == "hook":
            rc, _ = run(cmd, log, fault=fault[1])
            if rc == -9:
                out.injected += 1
            else:
                out.problems.append(f"SSL_BENCH_FAULT={fault[1]} did not kill the run (exit {rc})")
            label = fault[1]
        else:
            # u of the training left after this process's first checkpoint; none left: u of the whole command
            u, steps, start = fault[1], STEPS[t.command], checkpoint_step(results) or 0
            left = (steps - start - 10) / steps
            if left > 0:
                ready, delay = new_checkpoint(results), u * left * refs.train_s[t.command]
                label = f"kill {delay:.2f} s after the first checkpoint from step {start}"
            else:
                ready, delay = (lambda: True), u * refs.wall_s[t.command]
                label = f"kill {delay:.2f} s after the start from step {start}"
            if kill_when(cmd, log, ready, delay):
                out.injected += 1
            else:
                out.missed += 1
                label += " (ended first: missed)"
        step = checkpoint_step(results)
        states.append(f"{label}: {len(record_files(results))} record(s), checkpoint {step}")
    rc, err = run(cmd, log)
    if rc != 0:
        out.problems.append(f"the resume exited with {rc}: {err.strip().splitlines()[-1:]}")
    account(out, compare(results, refs.records[t.command]))
    out.problems += [f"left behind: {p}" for p in leftovers(results)]
    out.identical = not out.problems
    out.note = "; ".join(states)
    return out


def page_staged(staged: Callable[[], list[Path]]) -> Callable[[], bool]:
    """A trigger, cheap enough to ask every 0.2 ms: the new generation's staging folder holds index.html."""
    found: list[Path] = []

    def ready() -> bool:
        if not found:
            found.extend(staged())
            return False
        return (found[0] / "index.html").exists()

    return ready


def leaderboard_trial(t: Trial, work: Path, refs: References) -> Outcome:
    out = Outcome(f"[{t.index:02d}] leaderboard")
    assert refs.lb_before is not None
    results, log = work / f"t{t.index:02d}", work / f"t{t.index:02d}.log"
    shutil.copytree(refs.lb_before, results)
    records_before = {p: p.read_bytes() for p in record_files(results)}
    args = cli("leaderboard", "--results-dir", str(results))
    seen = []
    for _, phase, u in t.faults:
        for png in results.glob("*.png"):  # each generation draws every plot, as the timed reference did (a plot
            png.unlink()  # a killed generation moved in would be copied, not drawn, and the kill land after the end)
        stale = set(results.glob(".leaderboard-*"))  # staging folders of a generation killed before this one

        def staged(names: str = "", stale: set[Path] = stale) -> list[Path]:
            return [p for p in results.glob(f".leaderboard-*{names}") if p.parent not in stale and p not in stale]

        if phase == "any":  # anywhere in the command, imports and plotting included
            ready, delay = (lambda: True), u * 0.8 * refs.lb_s
        elif phase == "staging":  # while the generation is drawn into its staging folder
            ready, delay = (lambda: bool(staged())), u * refs.lb_s / 2
        else:  # the page is staged: the README, then the moves into place (milliseconds)
            ready, delay = page_staged(staged), u * 0.003
        if kill_when(args, log, ready, delay, poll=0.001 if phase != "moving" else 0.0002):
            out.injected += 1
        else:
            out.missed += 1
        state = []
        for name, data in snapshot(results).items():
            if data in (refs.lb_old[name], refs.lb_new[name]):
                state.append(f"{name} {'old' if data == refs.lb_old[name] else 'new'}")
            else:
                out.problems.append(f"{name} after a kill is neither the old nor the new generation (partial?)")
        out.problems += [f"incomplete plot after a kill: {n}" for n in complete_pngs(results)]
        seen.append(f"{phase} +{delay:.2f} s: {', '.join(state)}")
    rc, _ = run(args, log)
    if rc != 0:
        out.problems.append(f"the later generation exited with {rc}")
    if snapshot(results) != refs.lb_new:
        out.problems.append("the later generation differs from an uninterrupted one")
    out.problems += [f"left behind: {p}" for p in leftovers(results)]
    out.problems += [f"incomplete plot: {n}" for n in complete_pngs(results)]
    changed = [str(p) for p, data in records_before.items() if not p.exists() or p.read_bytes() != data]
    out.lost += len(changed)
    out.problems += [f"record changed or lost: {p}" for p in changed]
    out.identical = not out.problems
    out.note = "; ".join(seen)
    return out


def disk_full(name: str, spec: str, work: Path, refs: References) -> Outcome:
    """A write fails with ENOSPC: one-line error (exit 2), earlier checkpoint and records intact, clean resume."""
    out = Outcome(f"[disk-full] {name} {spec}")
    results, log = work / f"diskfull-{spec.split(':')[1]}-{name}", work / f"diskfull-{spec.split(':')[1]}-{name}.log"
    others = "da"  # records of another command, already in the results dir
    shutil.copytree(work / f"ref-{others}" / "runs", results / "runs")
    before = {p: p.read_bytes() for p in record_files(results)}
    cmd = command(name, results)
    rc, err = run(cmd, log, fault=spec)
    last = (err.strip().splitlines() or [""])[-1]
    suffix = ".pt" if "checkpoint" in spec else ".json"
    if rc != 2 or "Traceback" in err or not last.startswith("ssl-bench: error: could not write "):
        out.problems.append(f"exit {rc}, not a one-line error: {last!r}")
    elif f"{suffix}: no space left on device" not in last:
        out.problems.append(f"the error does not name the file and 'no space left': {last!r}")
    if not list((results / ".checkpoints").glob("*.pt")):
        out.problems.append("no checkpoint left to resume from")
    out.problems += [f"left behind by the failed write: {p}" for p in leftovers(results) if not p.endswith(".pt")]
    changed = [str(p) for p, data in before.items() if not p.exists() or p.read_bytes() != data]
    out.lost += len(changed)
    out.problems += [f"record changed or lost: {p}" for p in changed]
    if name == "active":  # round 0 was recorded before the full disk, and stays as it was
        first = {k: r for k, r in refs.records[name].items() if k[1] == 0}
        account(out, compare(results, {**refs.records[others], **first}))
    rc, err = run(cmd, log)
    if rc != 0 or "resuming from" not in err:
        out.problems.append(f"the re-run exited with {rc} or did not resume from the checkpoint")
    account(out, compare(results, {**refs.records[others], **refs.records[name]}))
    out.problems += [f"left behind: {p}" for p in leftovers(results)]
    out.identical = not out.problems
    out.note = last.removeprefix("ssl-bench: error: ")[:110]
    return out


def concurrency(work: Path) -> Outcome:
    """WRITERS processes run the same 4-run grid on one results dir at once: each run trains and is recorded once."""
    out = Outcome(f"[concurrency] {WRITERS} writers, one grid")
    results = work / "concurrent"
    args = command("grid", results)
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(args, cwd=ROOT, env=ENV, **pipes) for _ in range(WRITERS)]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    (work / "concurrent.log").write_text("\n".join(errs))
    out.problems += [f"writer {i} exited with {p.returncode}" for i, p in enumerate(procs) if p.returncode != 0]
    trained = [line.split(": acc_median")[0] for e in errs for line in e.splitlines() if ": acc_median" in line]
    recs = [(p, load(p)) for p in record_files(results)]
    corrupt = [str(p) for p, r in recs if r is None]
    keys = [key(r) for _, r in recs if r is not None]
    out.corrupt += len(corrupt)
    out.problems += [f"corrupt: {p}" for p in corrupt]
    if len(set(keys)) != 4 or len(keys) != 4:
        out.lost += max(0, 4 - len(set(keys)))
        out.problems.append(f"{len(keys)} records of {len(set(keys))} runs, expected 4 runs recorded once")
    if len(trained) != 4 or len({t.split("] ", 1)[-1] for t in trained}) != 4:
        out.problems.append(f"runs trained {len(trained)} times in all, expected each of 4 once: {trained}")
    out.problems += [f"left behind: {p}" for p in leftovers(results)]
    if snapshot(results)["README.md"] is None:
        out.problems.append("no README.md")
    out.problems += [f"incomplete plot: {n}" for n in complete_pngs(results)]
    out.identical = not out.problems
    out.note = f"{len(keys)} records, {len(trained)} trainings"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=MASTER_SEED, help=f"master seed (default {MASTER_SEED})")
    parser.add_argument("--only", help="comma-separated trial numbers and/or disk-full, concurrency")
    parser.add_argument("--jobs", type=int, default=2, help="trials at once (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (it is kept anyway on failure)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    trials = plan(args.seed)
    wanted = set(args.only.split(",")) if args.only else None
    if wanted is not None:
        trials = [t for t in trials if str(t.index) in {w.lstrip("0") for w in wanted}]
    extras = [x for x in ("disk-full", "concurrency") if wanted is None or x in wanted]
    work = Path(tempfile.mkdtemp(prefix="ssl-bench-faults-"))
    print(
        f"fault suite: master seed {args.seed}, {len(trials)} trials + {', '.join(extras) or 'nothing else'}, "
        f"work folder {work}",
        flush=True,
    )
    needed = {t.command for t in trials} | ({"smoke", "da"} if any(t.kind == "leaderboard" for t in trials) else set())
    needed |= {"smoke", "da", "active"} if "disk-full" in extras else set()
    refs = references(work, sorted(needed - {"leaderboard"}), args.jobs)
    print(
        f"references: {', '.join(f'{n} {s:.1f} s of training' for n, s in refs.train_s.items())}"
        + (f", leaderboard {refs.lb_s:.1f} s" if refs.lb_s else ""),
        flush=True,
    )
    jobs = [
        (lambda t=t: (leaderboard_trial if t.kind == "leaderboard" else train_trial)(t, work, refs)) for t in trials
    ]
    if "disk-full" in extras:
        cases = (("smoke", "enospc:checkpoint:3"), ("smoke", "enospc:record:1"), ("active", "enospc:record:2"))
        jobs += [lambda n=n, spec=spec: disk_full(n, spec, work, refs) for n, spec in cases]
    outcomes = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for future in as_completed([pool.submit(timed, job) for job in jobs]):
            outcomes.append(future.result())
            report(outcomes[-1])
    if "concurrency" in extras:
        outcomes.append(timed(lambda: concurrency(work)))
        report(outcomes[-1])
    faults = [o for o in outcomes if o.name[1:3].isdigit()]
    injected = sum(o.injected for o in faults)
    ok = all(o.identical for o in outcomes)
    if wanted is None and injected < MIN_FAULTS:
        ok = False
        print(f"only {injected} faults landed (missed {sum(o.missed for o in faults)}), at least {MIN_FAULTS} needed")
    full = [o for o in outcomes if o.name.startswith("[disk-full]")]
    conc = [o for o in outcomes if o.name.startswith("[concurrency]")]
    summary = (
        f"faults injected {injected}, resumes identical {sum(o.injected for o in faults if o.identical)}, "
        f"records lost {sum(o.lost for o in outcomes)}, records corrupt {sum(o.corrupt for o in outcomes)}"
    )
    if full:
        summary += f", disk-full ok {sum(o.identical for o in full)}/{len(full)}"
    if conc:
        summary += f", concurrent writers {WRITERS}: {'each run recorded once' if conc[0].identical else 'FAILED'}"
    if not ok:
        again = ",".join(o.name[1:].split("]")[0] for o in outcomes if not o.identical)
        print(f"FAILED; re-run with: python tests/promises/faults/run.py --seed {args.seed} --only {again} --keep")
        print(f"work folder kept: {work}")
    elif not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{summary} ({time.monotonic() - start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
