"""A real SIGKILL in the middle of a CLI run, then a re-run: the record equals an uninterrupted run's (CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ssl_bench.results.store import load_records
from tests.conftest import ROOT

ARGS = ["--set", "train.steps=200", "--set", "train.eval_every=20", "--quiet"]


def cli(results_dir):
    exe = ROOT / ".venv/bin/ssl-bench"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "ssl_bench.cli"]
    return [*base, "run", str(ROOT / "recipes/smoke.toml"), "--results-dir", str(results_dir), *ARGS]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = killed / ".checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (ckpt_dir.exists() and list(ckpt_dir.glob("*.pt"))):
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert load_records(killed) == [] and list(ckpt_dir.glob("*.pt"))
    resumed = subprocess.run(cli(killed), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    fresh = subprocess.run(cli(tmp_path / "fresh"), env=env, capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    (a,), (b,) = load_records(killed), load_records(tmp_path / "fresh")
    assert a["acc_history"] == b["acc_history"], json.dumps([a["acc_history"], b["acc_history"]])
    assert (a["acc_median"], a["acc_final"], a["acc_raw_final"]) == (
        b["acc_median"],
        b["acc_final"],
        b["acc_raw_final"],
    )
    assert a["config_hash"] == b["config_hash"] and a["split_hash"] == b["split_hash"]
