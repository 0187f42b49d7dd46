"""The per-run lock: one holder at a time, a dead holder's lock taken over, a live one refused (ssl_bench/locks.py)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ssl_bench.cli import main
from ssl_bench.locks import RunLock, lock_path, read_holder
from ssl_bench.results.store import load_records
from tests.conftest import ROOT

SMOKE = str(ROOT / "recipes/smoke.toml")

HOLD = textwrap.dedent(
    """
    import sys, time
    from ssl_bench.locks import RunLock
    lock = RunLock(sys.argv[1], "abc")
    assert lock.acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_one_holder_at_a_time_and_release_unlinks(tmp_path):
    first, second = RunLock(tmp_path, "abc"), RunLock(tmp_path, "abc")
    assert first.acquire() and first.stale is None
    holder = read_holder(lock_path(tmp_path, "abc"))
    assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
    assert not second.acquire()  # a second open file description cannot take the flock, even in this process
    assert second.holder == holder
    first.release()
    assert not lock_path(tmp_path, "abc").exists()
    with second:
        assert second.acquire() and second.stale is None
    assert not lock_path(tmp_path, "abc").exists()


def test_a_lock_file_nobody_holds_is_stale_and_taken_over(tmp_path):
    path = lock_path(tmp_path, "abc")
    path.parent.mkdir(parents=True)
    dead = {"host": "elsewhere", "pid": 999999, "started": "2026-01-01T00:00:00+00:00"}
    path.write_text(json.dumps(dead))  # written by a process that died without unlinking it
    lock = RunLock(tmp_path, "abc")
    assert lock.acquire() and lock.stale == dead
    assert read_holder(path)["pid"] == os.getpid()
    lock.release()


def test_other_process_holds_then_dies(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        lock = RunLock(tmp_path, "abc")
        assert not lock.acquire() and lock.holder["pid"] == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert lock.acquire() and lock.stale["pid"] == proc.pid  # the kernel dropped the dead process's flock
        lock.release()
    finally:
        proc.kill()


@pytest.mark.slow
def test_second_starter_of_a_running_run_skips_it(tmp_path, capsys):
    """Two `ssl-bench run` of the same run: the one that finds the lock held skips with a message, the other trains."""
    results = tmp_path / "results"
    args = ["run", SMOKE, "--results-dir", str(results), "--set", "train.steps=600", "--quiet"]
    exe = ROOT / ".venv/bin/ssl-bench"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ssl_bench.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([*cmd, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not list((results / ".locks").glob("*.lock")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the first run ended before the second started"
        assert main(args) == 0
        err = capsys.readouterr().err
        assert f"being trained by pid {proc.pid} on host" in err and "skipped" in err
        assert load_records(results) == []  # the second starter wrote nothing
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    finally:
        proc.kill()
    (rec,) = load_records(results)
    assert rec["steps"] == 600 and not list((results / ".locks").glob("*.lock"))
