"""The GPU measurement script (tests/gpu/run.py): its budget and kill logic, and (slow) every command it runs, at a
step or two each on the CPU, so that the script a GPU session runs in one call still works when one is lent."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "tests/gpu/run.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_step_is_killed_at_its_limit_and_none_starts_in_the_last_minute(tmp_path):
    gpu = load()
    s = gpu.Session(tmp_path, budget_s=3600)
    ok, last = s.command(
        "sleeper", [sys.executable, "-c", "print('started', flush=True); import time; time.sleep(60)"], 1
    )
    assert (ok, last) == (False, "killed after 1 s")
    step = json.loads((tmp_path / "gpu.json").read_text())["steps"]["sleeper"]
    assert step["status"] == "failed" and step["wall_s"] < 30
    assert "started" in (tmp_path / "log.txt").read_text()
    ok, last = s.command("echo", [sys.executable, "-c", "print('a'); print('last line')"], 30)
    assert (ok, last) == (True, "last line")
    s.budget_s = s.elapsed() + gpu.MIN_STEP_S - 1  # less than a minute left
    assert s.command("late", [sys.executable, "-c", "raise SystemExit(3)"], 30) == (False, "skipped")
    steps = json.loads((tmp_path / "gpu.json").read_text())["steps"]
    assert [steps[n]["status"] for n in ("sleeper", "echo", "late")] == ["failed", "ok", "skipped"]


def test_digits_summary_is_the_mean_and_sample_std_of_the_records(tmp_path):
    runs = tmp_path / "runs" / "digits"
    runs.mkdir(parents=True)
    for seed, acc in ((1, 0.9), (2, 0.95), (3, 1.0)):
        record = {"seed": seed, "acc_median": acc, "wall_s": 10.0 * seed, "steps_per_s": 100.0, "device": "cuda"}
        (runs / f"r{seed}.json").write_text(json.dumps(record))
    d = load().digits_summary(tmp_path)
    assert d["acc_median_by_seed"] == {"1": 90.0, "2": 95.0, "3": 100.0}
    assert (d["mean"], d["std"], d["wall_s"], d["devices"]) == (95.0, 5.0, 20.0, ["cuda"])


def test_cpu_without_quick_is_refused():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "/tmp/unused", "--device", "cpu"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "add --quick to check the commands" in done.stderr


@pytest.mark.slow
def test_every_command_of_the_script_runs_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--device", "cpu", "--quick"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:]
    figures = json.loads((out / "gpu.json").read_text())
    ran = {"env", "tests", "bench-reference", "digits-fp32", "digits-bf16"}
    ran |= {f"bench-{label}" for label in ("fp32", "bf16", "bf16+channels_last", "channels_last")}
    assert {n for n, step in figures["steps"].items() if step["status"] == "ok"} == ran
    left_out = {"bench-bf16+channels_last+compile", "bench-compile", "bench-fp16", "digits-fp16"}
    assert {n for n, step in figures["steps"].items() if step["status"] == "not run"} == left_out
    assert all(f"{n}: not run, " in done.stdout for n in left_out)
    assert set(figures["bench_reference"]) >= {"ours", "reference", "ratio"}
    assert set(figures["bench_switches"]) == {"fp32", "bf16", "bf16+channels_last", "channels_last"}
    assert figures["bench_switches"]["bf16"]["speed"]["precision"] == "bf16"
    for precision in ("fp32", "bf16"):
        d = figures["digits"][precision]
        assert list(d["acc_median_by_seed"]) == ["1"] and 0 <= d["mean"] <= 100
    assert "== summary" in done.stdout and (out / "log.txt").stat().st_size > 0
