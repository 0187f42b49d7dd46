"""``ssl-bench bench grid``: one grid timed under several executors in turns, with the machine's busy CPU time."""

from __future__ import annotations

import json
import os
import sys

import pytest

from ssl_bench.benchmarks import grid
from ssl_bench.benchmarks.grid import Variant, busy_seconds, parse_variants
from ssl_bench.cli import main
from ssl_bench.errors import ConfigError, SSLBenchError
from ssl_bench.executor.options import EXECUTORS
from tests.conftest import ROOT

SMOKE = str(ROOT / "recipes/smoke.toml")


def test_executor_specs():
    assert parse_variants("local:1, ray:2,local:4", EXECUTORS) == [
        Variant("local", 1),
        Variant("ray", 2),
        Variant("local", 4),
    ]
    for bad in ("dask:2", "local:0", "local", "local:x", "ray:-1", ""):
        with pytest.raises(ConfigError, match="is not EXECUTOR:WORKERS"):
            parse_variants(bad, EXECUTORS)
    with pytest.raises(ConfigError, match="names local:2 twice"):
        parse_variants("local:2,ray:2,local:2", EXECUTORS)


def test_busy_seconds_counts_all_but_idle_and_iowait():
    # user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
    line = "cpu  1000 20 300 90000 4000 5 60 7 500 0"
    assert busy_seconds(line) == pytest.approx((1000 + 20 + 300 + 5 + 60 + 7) / os.sysconf("SC_CLK_TCK"))
    assert busy_seconds("cpu  nonsense") is None and busy_seconds("") is None
    if os.path.exists("/proc/stat"):
        assert busy_seconds() > 0


def test_a_failing_command_is_named_with_its_last_line():
    fail = [sys.executable, "-c", "import sys; sys.stderr.write('ssl-bench: error: boom\\n\\n'); sys.exit(3)"]
    with pytest.raises(SSLBenchError, match=r"^ray:2, round 1 failed \(exit 3\): ssl-bench: error: boom$"):
        grid._timed(fail, "ray:2, round 1")


def test_executors_take_turns_and_the_first_is_the_baseline(monkeypatch, tmp_path):
    walls = {"local:1": [6.0, 4.0, 5.0], "local:2": [2.0, 3.0, 2.5], "ray:2": [10.0, 10.0, 12.5]}
    order: list[str] = []

    def timed(command, what):
        name = what.split(",")[0]
        if what.endswith("rerun"):
            return 1.5, 0.5
        order.append(name)
        return walls[name][sum(n == name for n in order) - 1], 2.0 * walls[name][0]

    monkeypatch.setattr(grid, "_timed", timed)
    monkeypatch.setattr(grid, "load_records", lambda _: [{}] * 4)
    variants = parse_variants("local:1,local:2,ray:2", EXECUTORS)
    out = grid.bench_grid([tmp_path / "r.toml"], [], [], variants, n_runs=4, rounds=3, log=lambda _: None)
    # each round starts with the next executor, so none always runs first
    assert order == ["local:1", "local:2", "ray:2", "local:2", "ray:2", "local:1", "ray:2", "local:1", "local:2"]
    rows = {f"{v['executor']}:{v['workers']}": v for v in out["variants"]}
    assert rows["local:1"]["wall_s"] == [6.0, 4.0, 5.0] and rows["local:1"]["wall_median_s"] == 5.0
    assert rows["local:2"]["speedup_vs_first"] == 2.0 and rows["ray:2"]["speedup_vs_first"] == 0.5
    assert rows["ray:2"]["busy_cpu_median_s"] == 20.0 and rows["ray:2"]["rerun_s"] == [1.5] * 3
    assert out["runs"] == 4 and out["rounds"] == 3


def test_a_grid_that_loses_records_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(grid, "_timed", lambda command, what: (1.0, 1.0))
    monkeypatch.setattr(grid, "load_records", lambda _: [{}] * 3)
    with pytest.raises(SSLBenchError, match="local:1, round 1: 3 records written, 4 expected"):
        grid.bench_grid([tmp_path / "r.toml"], [], [], [Variant("local", 1)], 4, 1, log=lambda _: None)


def test_the_measured_command_is_the_users_run():
    command = grid.run_command([ROOT / "r.toml"], ["train.steps=5"], ["my.plugin"], Variant("ray", 2),
                               ROOT / "out", "auto")  # fmt: skip
    assert command[:4] == [sys.executable, "-m", "ssl_bench.cli", "run"]
    assert command[4:] == [str(ROOT / "r.toml"), "--results-dir", str(ROOT / "out"), "--set=train.steps=5",
                           "--plugin=my.plugin", "--quiet", "--executor", "ray", "--workers", "2",
                           "--address", "auto"]  # fmt: skip
    assert "--address" not in grid.run_command([], [], [], Variant("local", 2), ROOT, "auto")


def test_bench_grid_bad_inputs(capsys, tmp_path):
    (tmp_path / "a_file").write_text("")
    for argv, message in (
        ([SMOKE, "--rounds", "0"], "--rounds must be >= 1, got 0"),
        ([SMOKE, "--executors", "local:1,dask:2"], "'dask:2' is not EXECUTOR:WORKERS"),
        ([str(tmp_path / "none.toml")], "none.toml"),
        ([SMOKE, "--set", "train.steps=0"], "train.steps"),
        ([SMOKE, "--json", str(tmp_path / "a_file/x.json")], "cannot be written"),
    ):
        assert main(["bench", "grid", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("ssl-bench: error:") and err.count("\n") == 1, err


@pytest.mark.slow
def test_bench_grid_times_a_real_grid(tmp_path, capsys):
    out = tmp_path / "grid.json"
    argv = ["bench", "grid", SMOKE, "--set", "train.steps=5", "--set", "grid.seeds=[1,2]", "--executors", "local:1"]
    assert main([*argv, "--rounds", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    (row,) = result["variants"]
    assert result["runs"] == 2 and result["overrides"] == ["train.steps=5", "grid.seeds=[1,2]"]
    assert len(row["wall_s"]) == len(row["rerun_s"]) == 1 and row["wall_s"][0] > 0 and row["speedup_vs_first"] == 1
    # a fresh process imports torch and trains, so the whole machine was busy for part of it (Linux)
    assert row["busy_cpu_s"][0] is None or row["busy_cpu_s"][0] > 0.5
    assert "round 1/1 local:1:" in printed and "1.00x" in printed
    # the machine and commit the figures came from
    assert result["host"]["cores"] == os.cpu_count() and len(result["git_commit"]) == 40
    assert f"on {result['host']['cpu']}, {os.cpu_count()} cores" in printed.splitlines()[0]
