"""Every GPU measurement the README's "Speed" section leaves open, in one command for a machine with a CUDA GPU:

    python3 tests/gpu/run.py OUT [--budget-s 540] [--device cuda] [--only env,tests,bench,digits]

It needs only the runtime packages (torch, torchvision, timm, scikit-learn, pandas, tabulate, tqdm, matplotlib,
pytest) and no install: every step is ``python -m ssl_bench.cli`` or ``python -m pytest`` with this checkout on
``PYTHONPATH``, a subprocess whose output goes to the terminal and to ``OUT/log.txt``. The steps (``PLAN``, most
wanted first):

- ``env``: Python's, torch's and CUDA's versions and the GPU's name (and ``nvidia-smi -L`` where it exists);
- ``tests``: the test that skips without a GPU (``tests/augment/test_ops.py::test_cuda_matches_cpu``) with its
  file, and the speed and no-host-read tests (``CUDA_TESTS``);
- ``bench``: ``ssl-bench bench train`` of the default step (FixMatch, WRN-28-2, 64 + 448 x 2 images of 32x32)
  against the reference pipeline, then ours alone under each speed switch (``SWITCHES``: fp32, bf16,
  bf16 + channels_last, those with ``torch.compile`` of the model, then fp16 with loss scaling, channels_last and
  compile alone);
- ``digits``: the digits FixMatch protocol at 20 labels, seeds 1-3, in fp32 and bf16, then fp16: the accuracy
  check a precision needs before it becomes a device's default.

Every figure lands in ``OUT/gpu.json`` (rewritten after each step, so a run cut short keeps what it measured), and
a summary is printed at the end. A step that fails is recorded with its last output line and the others go on. The
whole command ends within ``--budget-s``: a step still running then is killed, and none starts in the last minute
(those are listed as skipped). ``--device cpu --quick`` runs the same commands at a step or two each, the bench
ones on the smoke recipe's small CNN, measuring nothing, and lists the compile and fp16 steps as not run
(``tests/gpu/test_gpu_script.py`` does, so that the script cannot rot unseen on machines without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CUDA_TESTS = [
    "tests/train/test_switches.py",
    "tests/augment/test_no_host_reads.py",
    "tests/algorithms/test_step_no_host_reads.py",
]
# the speed switches timed on the default step: label -> --set overrides
SWITCHES = {
    "fp32": ["train.precision=fp32"],
    "bf16": ["train.precision=bf16"],
    "bf16+channels_last": ["train.precision=bf16", "train.memory_format=channels_last"],
    "bf16+channels_last+compile": ["train.precision=bf16", "train.memory_format=channels_last", "train.compile=model"],
    "fp16": ["train.precision=fp16"],
    "channels_last": ["train.precision=fp32", "train.memory_format=channels_last"],
    "compile": ["train.precision=fp32", "train.compile=model"],
}
# the steps, most wanted first, since the budget may end before the last: (group of --only, what, its argument)
PLAN = [
    ("env", "env", None),
    ("tests", "tests", None),
    ("bench", "reference", None),
    *(("bench", "switch", label) for label in ("fp32", "bf16", "bf16+channels_last", "bf16+channels_last+compile")),
    *(("digits", "digits", precision) for precision in ("fp32", "bf16")),
    *(("bench", "switch", label) for label in ("fp16", "channels_last", "compile")),
    ("digits", "digits", "fp16"),
]
DIGITS = "recipes/digits/fixmatch.toml"
MIN_STEP_S = 60  # no step starts with less of the budget left


class Session:
    """The output folder, the log, the figures so far and the time budget."""

    def __init__(self, out: Path, budget_s: float):
        self.out = out
        self.log = (out / "log.txt").open("a", encoding="utf-8")
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.figures: dict[str, Any] = {"steps": {}}

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def save(self) -> None:
        self.figures["elapsed_s"] = round(self.elapsed(), 1)
        tmp = self.out / "gpu.json.tmp"
        tmp.write_text(json.dumps(self.figures, indent=2, default=str))
        tmp.replace(self.out / "gpu.json")

    def not_run(self, name: str, why: str) -> None:
        """A step this device or mode leaves out, listed as such in gpu.json and in the summary."""
        self.say(f"== {name}: not run, {why}")
        self.figures["steps"][name] = {"status": "not run", "why": why}
        self.save()

    def command(self, name: str, argv: list[str], timeout_s: float) -> tuple[bool, str]:
        """Run ``argv`` from the checkout's root with its output streamed to the terminal and the log; (ok, last
        line). It is killed after ``timeout_s`` or at the budget's end, whichever comes first, and not started once
        less than a minute of the budget is left."""
        left = self.budget_s - self.elapsed()
        if left < MIN_STEP_S:
            self.say(f"== {name}: skipped, {max(left, 0):.0f} s of the {self.budget_s:.0f} s budget left")
            self.figures["steps"][name] = {"status": "skipped"}
            self.save()
            return False, "skipped"
        limit = min(timeout_s, left)
        self.say(f"== {name}: {' '.join(argv)}")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        env["PYTHONUNBUFFERED"] = "1"
        began = time.monotonic()
        last = ""
        try:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
        except OSError as exc:
            rc, last = 127, str(exc)
        else:
            timer = threading.Timer(limit, proc.kill)
            timer.start()
            assert proc.stdout is not None
            for line in proc.stdout:
                self.log.write(line)
                sys.stdout.write(line)
                last = line.strip() or last
            rc = proc.wait()
            if not timer.is_alive():
                last = f"killed after {limit:.0f} s"
            timer.cancel()
        wall = round(time.monotonic() - began, 1)
        ok = rc == 0
        self.figures["steps"][name] = {"status": "ok" if ok else "failed", "rc": rc, "wall_s": wall, "last": last}
        self.say(f"-- {name}: {'ok' if ok else f'FAILED (rc {rc}): {last}'} in {wall} s")
        self.save()
        return ok, last


def ssl_bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssl_bench.cli", *args]


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def step_env(s: Session, device: str) -> None:
    probe = (
        "import torch, platform; n = torch.cuda.device_count(); print('python', platform.python_version(), "
        "'torch', torch.__version__, 'cuda', torch.version.cuda, 'devices', [torch.cuda.get_device_name(i) "
        "for i in range(n)])"
    )
    s.command("env", [sys.executable, "-c", probe], 120)
    if shutil.which("nvidia-smi"):
        s.command("nvidia-smi", ["nvidia-smi", "-L"], 60)
    s.figures["device"] = device


def step_tests(s: Session) -> None:
    s.command("tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *CUDA_TESTS], 300)


def bench_args(device: str, quick: bool) -> list[str]:
    steps = ["--steps", "1", "--warmup", "1"] if quick else ["--steps", "30", "--warmup", "5"]
    recipe = ["recipes/smoke.toml", "--algorithm", "fixmatch"] if quick else []  # the default: WRN-28-2 at 32x32
    return [*recipe, "--device", device, *steps]


def step_bench_reference(s: Session, device: str, quick: bool, tmp: Path) -> None:
    path = tmp / "bench-reference.json"
    ok, _ = s.command(
        "bench-reference", ssl_bench("bench", "train", *bench_args(device, quick), "--json", str(path)), 300
    )
    if ok:
        s.figures["bench_reference"] = summary_of_bench(json.loads(path.read_text()))
        s.save()


def step_bench_switch(s: Session, device: str, quick: bool, tmp: Path, label: str) -> None:
    if quick and "compile" in label:  # the command line is that of the others
        return s.not_run(f"bench-{label}", "--quick: inductor's first compile takes minutes on a CPU")
    if device == "cpu" and label == "fp16":
        return s.not_run(f"bench-{label}", "fp16 autocast is a GPU switch (refused on a CPU)")
    path = tmp / f"bench-{label}.json"
    argv = ssl_bench("bench", "train", *bench_args(device, quick), "--pipeline", "ours", *sets(SWITCHES[label]))
    ok, _ = s.command(f"bench-{label}", [*argv, "--json", str(path)], 300)
    if ok:
        s.figures.setdefault("bench_switches", {})[label] = summary_of_bench(json.loads(path.read_text()))["ours"]
        s.save()


def summary_of_bench(doc: dict) -> dict:
    """Per pipeline: ms per step, steps/s, images/s, the data/probes/model split, peak MB and the switches; and the
    ratio when both pipelines ran."""
    keep = ("ms_per_step", "steps_per_s", "images_per_s", "ms", "peak_mb", "speed", "steps_timed")
    out: dict[str, Any] = {name: {k: p.get(k) for k in keep} for name, p in doc["pipelines"].items()}
    if "ratio" in doc:
        out["ratio"] = doc["ratio"]
    out["model"], out["algorithm"], out["device"] = doc.get("model"), doc.get("algorithm"), doc.get("device")
    return out


def step_digits(s: Session, device: str, quick: bool, tmp: Path, precision: str) -> None:
    if precision == "fp16" and device == "cpu":
        return s.not_run(f"digits-{precision}", "fp16 autocast is a GPU switch (refused on a CPU)")
    grid = ["grid.n_labels=[20]", f"grid.seeds={'[1]' if quick else '[1,2,3]'}", f"train.device={json.dumps(device)}"]
    if quick:
        grid += ["train.steps=20", "train.eval_every=10"]
    results = tmp / f"digits-{precision}"
    argv = ssl_bench("run", DIGITS, *sets([*grid, f"train.precision={precision}"]), "--results-dir", str(results))
    ok, _ = s.command(f"digits-{precision}", [*argv, "--quiet"], 300)
    if ok:
        s.figures.setdefault("digits", {})[precision] = digits_summary(results)
        s.save()


def digits_summary(results: Path) -> dict:
    """acc_median (%) per seed, their mean and sample std, and the mean wall_s and steps_per_s of the runs."""
    records = [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("*.json"))]
    accs = {str(r["seed"]): round(100 * r["acc_median"], 2) for r in records}
    values = list(accs.values())
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return {
        "acc_median_by_seed": accs,
        "mean": round(mean, 2),
        "std": round(std, 2),
        "wall_s": round(sum(r["wall_s"] for r in records) / len(records), 1),
        "steps_per_s": round(sum(r["steps_per_s"] for r in records) / len(records), 1),
        "devices": sorted({str(r.get("device")) for r in records}),
    }


def report(s: Session) -> None:
    f = s.figures
    s.say("\n== summary")
    for name, step in f["steps"].items():
        s.say(f"{name:32s} {step['status']:8s} {step.get('wall_s', '')}")
    ref = f.get("bench_reference")
    if ref:
        ours = ref["ours"]
        line = (
            f"bench train ({ref['algorithm']}, {ref['model']}, {ref['device']}): ours {ours['ms_per_step']:.2f} ms/step"
        )
        if "reference" in ref and "ratio" in ref:
            line += f", reference {ref['reference']['ms_per_step']:.2f} ms/step, ratio {ref['ratio']:.2f}x"
        s.say(line)
    for label, p in f.get("bench_switches", {}).items():
        figures = f"{p['ms_per_step']:9.2f} ms/step {p['images_per_s']:10,.0f} images/s  peak {p['peak_mb']:,.0f} MB"
        s.say(f"  {label:28s} {figures}")
    for precision, d in f.get("digits", {}).items():
        s.say(
            f"digits fixmatch @20 {precision}: {d['mean']:.2f} ± {d['std']:.2f} {d['acc_median_by_seed']} "
            f"({d['wall_s']} s, {d['steps_per_s']} steps/s per run)"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for gpu.json and log.txt (created)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cuda:N; cpu only with --quick, to test this")
    p.add_argument(
        "--budget-s",
        type=float,
        default=540,
        help="end by this many seconds: a step is killed at the end, and none starts in the last minute (default 540)",
    )
    p.add_argument("--quick", action="store_true", help="a few steps each: checks the commands, measures nothing")
    p.add_argument("--only", default="env,tests,bench,digits", help="comma-separated steps (default: all)")
    args = p.parse_args(argv)
    if args.device == "cpu" and not args.quick:
        p.error("--device cpu measures nothing this script is for; add --quick to check the commands")
    args.out.mkdir(parents=True, exist_ok=True)
    s = Session(args.out, args.budget_s)
    s.figures.update(quick=args.quick, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="ssl-bench-gpu-") as name:
        tmp = Path(name)
        for group, what, arg in PLAN:
            if group not in only:
                continue
            if what == "env":
                step_env(s, args.device)
            elif what == "tests":
                step_tests(s)
            elif what == "reference":
                step_bench_reference(s, args.device, args.quick, tmp)
            elif what == "switch":
                step_bench_switch(s, args.device, args.quick, tmp, arg)
            else:
                step_digits(s, args.device, args.quick, tmp, arg)
    s.save()
    report(s)
    return 0 if all(step["status"] in ("ok", "not run") for step in s.figures["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
