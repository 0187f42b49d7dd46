"""Grids on executors: local worker processes and Ray tasks give the records of one-after-another runs, retry a
killed run from its checkpoint, report a failing run and go on, and skip what is recorded (ssl_bench/executor)."""

import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ssl_bench.cli import main
from ssl_bench.executor import GridOptions, run_grid, summary
from ssl_bench.locks import lock_path, read_holder
from ssl_bench.plan import load_recipe, plan
from ssl_bench.results.layout import checkpoint_path
from ssl_bench.results.store import load_records
from tests.conftest import ROOT

SMOKE = str(ROOT / "recipes/smoke.toml")
TINY = ["train.steps=40", "train.eval_every=20", "grid.seeds=[1, 2, 3, 4]"]
METRICS = ("config_hash", "split_hash", "acc_history", "acc_median", "acc_final", "acc_raw_final", "steps")


def planned(results, sets=TINY):
    return plan(load_recipe(SMOKE, list(sets)), results)


def metrics(results):
    return sorted(tuple(str(r[k]) for k in METRICS) for r in load_records(results))


def kill_when_checkpointed(results, chash, killed):
    """Kill the process that holds the run's lock once its first checkpoint is on disk."""
    deadline = time.monotonic() + 240
    ckpt = checkpoint_path(results, chash)
    while time.monotonic() < deadline:
        holder = read_holder(lock_path(results, chash))
        if holder and ckpt.exists():
            time.sleep(0.2)
            os.kill(holder["pid"], signal.SIGKILL)
            killed.append(holder["pid"])
            return
        time.sleep(0.05)


def kill_once(tmp_path, opts):
    """One 300-step run killed after its first checkpoint under ``opts``, and the same run left alone: (outcome of
    the killed run, its results dir, the undisturbed run's results dir)."""
    sets = ["train.steps=300", "train.eval_every=20", "train.checkpoint_every=20"]
    fresh, killed_dir = tmp_path / "fresh", tmp_path / "killed"
    run_grid(planned(fresh, sets), fresh, GridOptions(cpus_per_run=1))
    (p,) = planned(killed_dir, sets)
    killed: list[int] = []
    watcher = threading.Thread(target=kill_when_checkpointed, args=(killed_dir, p.config_hash, killed))
    watcher.start()
    (out,) = run_grid([p], killed_dir, opts)
    watcher.join()
    assert killed, "the run finished before it could be killed"
    return out, killed_dir, fresh


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--gpus-per-run", "0.5"], "--gpus-per-run needs --executor ray (local runs use train.device)"),
        (["--address", "auto"], "--address needs --executor ray"),
        (["--address", "headnode"], "--address needs --executor ray"),  # the option first, then its form
        (["--retries", "-1"], "--retries must be >= 0, got -1"),
        *(
            (
                ["--executor", "ray", "--gpus-per-run", g],
                f"--gpus-per-run must be a number >= 0 in steps of 0.0001 (e.g. 0.25), got {g}",
            )
            for g in ["-1.0", "nan", "inf", "1e-05"]
        ),
        (["--cpus-per-run", "-2"], "--cpus-per-run must be >= 1, got -2"),
        (["--cpus-per-run", "0", "--workers", "2"], "--cpus-per-run must be >= 1, got 0"),  # 0 is not "the default"
        (
            ["--executor", "ray", "--address", "headnode"],
            "--address 'headnode' is not auto, HOST:PORT (a cluster's GCS, as `ray start --head` prints it) or "
            "ray://HOST:PORT (Ray Client)",
        ),
        (["--executor", "ray", "--address", "ray://h:99999"], "--address 'ray://h:99999' is not auto, HOST:PORT"),
    ],
)
def test_bad_executor_options_are_one_line_errors(tmp_path, capfd, argv, message):
    results = tmp_path / "results"
    assert main(["run", SMOKE, "--results-dir", str(results), *argv]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith(f"ssl-bench: error: {message}") and len(err.splitlines()) == 1
    assert not results.exists()


def test_summary_counts_and_names_failures():
    from ssl_bench.runner import Outcome

    outs = [Outcome("a", "1", "done"), Outcome("b", "2", "skipped", "already recorded")]
    outs.append(Outcome("c", "3", "failed", "RuntimeError: boom"))
    assert summary(outs) == "runs: done 1 · skipped 1 · failed 1\n  failed: c: RuntimeError: boom"


@pytest.mark.slow
def test_local_workers_give_the_records_of_one_worker_and_rerun_skips(tmp_path, capfd):
    one, two = tmp_path / "one", tmp_path / "two"
    outs = run_grid(planned(one), one, GridOptions(workers=1, cpus_per_run=1))
    assert [o.status for o in outs] == ["done"] * 4
    capfd.readouterr()
    outs = run_grid(planned(two), two, GridOptions(workers=2, cpus_per_run=1))
    assert [o.status for o in outs] == ["done"] * 4
    assert len(load_records(two)) == 4 and metrics(one) == metrics(two)
    err = capfd.readouterr().err
    # one line per finished run, from the driver, naming its record; the workers do not print one of their own
    lines = [line for line in err.replace("\r", "\n").splitlines() if "acc_median" in line]
    assert len(lines) == 4 and all(line.startswith("done: ") for line in lines)
    written = sorted(str(p) for p in (two / "runs").rglob("*.json"))
    assert sorted(line.rpartition(" -> ")[2] for line in lines) == written
    started = time.perf_counter()
    again = run_grid(planned(two), two, GridOptions(workers=2))
    assert [o.status for o in again] == ["skipped"] * 4 and time.perf_counter() - started < 5
    assert "4 of 4 run(s) already recorded, skipped" in capfd.readouterr().err


def step_plugin(tmp_path, monkeypatch, name: str, step_body: str) -> Path:
    """A plugin module ``<name>_plugin`` on the import path: supervised, registered as ``name``, whose ``step`` is
    ``step_body`` (it may call ``super().step``); returns the smoke recipe that runs it."""
    body = textwrap.indent(textwrap.dedent(step_body).strip(), " " * 8)
    source = textwrap.dedent(
        f"""
        import os
        from dataclasses import dataclass

        from ssl_bench.algorithms.supervised import Supervised, SupervisedConfig
        from ssl_bench.registry import ALGORITHMS


        @dataclass(frozen=True)
        class Config_(SupervisedConfig):
            name: str = "{name}"


        @ALGORITHMS.register("{name}")
        class Algorithm_(Supervised):
            Config = Config_

            def step(self, batch, progress):
        """
    )
    (tmp_path / f"{name}_plugin.py").write_text(source + body + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / f"{name}.toml"
    recipe.write_text((ROOT / "recipes/smoke.toml").read_text().replace('name = "supervised"', f'name = "{name}"'))
    return recipe


@pytest.mark.slow
def test_local_workers_are_reused_from_run_to_run(tmp_path, monkeypatch):
    """4 runs on 2 workers are trained by 2 processes (imports and warm-up paid once per worker, not per run)."""
    step = """
        with open(os.environ["WHO_PIDS"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        return super().step(batch, progress)
    """
    recipe = step_plugin(tmp_path, monkeypatch, "who", step)
    monkeypatch.setenv("WHO_PIDS", str(tmp_path / "pids"))
    sets = ["--set", "train.steps=10", "--set", "train.eval_every=10", "--set", "grid.seeds=[1,2,3,4]"]
    argv = ["run", str(recipe), *sets, "--results-dir", str(tmp_path / "r"), "--plugin", "who_plugin"]
    assert main([*argv, "--workers", "2"]) == 0
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) == 4 * 10 and len(set(pids)) == 2 and str(os.getpid()) not in pids
    assert len(load_records(tmp_path / "r")) == 4


def test_a_dead_workers_reason_names_the_signal_and_the_oom_killer_for_sigkill():
    from ssl_bench.executor.local import _died

    assert _died(-9) == (
        "worker process killed by SIGKILL (the kernel's OOM killer sends it when memory runs out: try fewer --workers)"
    )
    assert _died(-15) == "worker process killed by SIGTERM"
    assert _died(-200) == "worker process killed by signal 200"
    assert _died(3) == "worker process exited with code 3 before reporting"


@pytest.mark.slow
def test_local_worker_killed_mid_run_is_retried_from_its_checkpoint(tmp_path, capfd):
    out, killed_dir, fresh = kill_once(tmp_path, GridOptions(cpus_per_run=1, retries=1))
    assert out.status == "done"
    err = capfd.readouterr().err
    assert "failed (worker process killed by SIGKILL (the kernel's OOM killer" in err and "retry 1 of 1" in err
    assert "resuming from" in err and "taking over the lock left by pid" in err
    assert metrics(killed_dir) == metrics(fresh)


@pytest.mark.slow
def test_a_failing_run_is_retried_reported_and_the_others_go_on(tmp_path, capfd, monkeypatch):
    recipe = step_plugin(tmp_path, monkeypatch, "explode", 'raise RuntimeError("boom at the first step")')
    results = tmp_path / "results"
    common = ["--results-dir", str(results), "--set", "train.steps=20", "--set", "train.eval_every=10"]
    argv = ["run", SMOKE, str(recipe), *common, "--plugin", "explode_plugin", "--workers", "2", "--retries", "1"]
    assert main(argv) == 1
    err = capfd.readouterr().err
    assert "failed (RuntimeError: boom at the first step); retry 1 of 1" in err
    assert "runs: done 1 · skipped 0 · failed 1" in err
    assert "  failed: explode digits.1@40-0: RuntimeError: boom at the first step" in err
    (rec,) = load_records(results)
    assert rec["algorithm"] == "supervised"


def test_a_diverged_run_fails_alone_and_is_not_retried(tmp_path, capfd):
    results = tmp_path / "results"
    recipe = tmp_path / "diverge.toml"
    text = (ROOT / "recipes/smoke.toml").read_text().replace("[train]\n", "[train]\nlr = 1e6\n")
    recipe.write_text(text.replace('name = "smoke"', 'name = "diverge"').replace("n_labels = [40]", "n_labels = [20]"))
    common = ["--results-dir", str(results), "--set", "train.steps=20", "--set", "train.eval_every=10"]
    assert main(["run", SMOKE, str(recipe), *common, "--workers", "2", "--retries", "2"]) == 1
    err = capfd.readouterr().err
    assert "retry" not in err and "runs: done 1 · skipped 0 · failed 1" in err
    assert "DivergenceError: the loss became non-finite at step" in err
    (rec,) = load_records(results)
    assert rec["n_labels"] == 40


def have_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not have_ray(), reason="Ray is not installed (pip install 'ssl_bench[ray]')")


@pytest.mark.slow
@needs_ray
def test_ray_grid_gives_the_local_records_retries_a_killed_task_and_rerun_skips(tmp_path, capfd):
    import ray as ray_mod

    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_grid(planned(local), local, GridOptions(workers=2, cpus_per_run=1))
    ray_mod.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        outs = run_grid(planned(on_ray), on_ray, GridOptions(executor="ray", workers=2, cpus_per_run=1))
        assert [o.status for o in outs] == ["done"] * 4
        assert metrics(on_ray) == metrics(local)
        again = run_grid(planned(on_ray), on_ray, GridOptions(executor="ray", workers=2))
        assert [o.status for o in again] == ["skipped"] * 4
        out, killed_dir, fresh = kill_once(tmp_path, GridOptions(executor="ray", cpus_per_run=1, retries=1))
        assert out.status == "done"
        assert "retry 1 of 1" in capfd.readouterr().err
        assert metrics(killed_dir) == metrics(fresh)
    finally:
        ray_mod.shutdown()


@needs_ray
def test_an_address_where_no_cluster_answers_is_an_error_at_once(tmp_path, capfd):
    """Ray itself retries a refused GCS address for minutes; the run refuses it in one line before any Ray call."""
    import socket

    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = tmp_path / "results"
    started = time.monotonic()
    assert (
        main(["run", SMOKE, "--results-dir", str(results), "--executor", "ray", "--address", f"127.0.0.1:{port}"]) == 2
    )
    err = capfd.readouterr().err.strip()
    assert err.startswith(f"ssl-bench: error: --address 127.0.0.1:{port}: no Ray cluster answers at 127.0.0.1:{port}")
    assert len(err.splitlines()) == 1 and time.monotonic() - started < 30 and not results.exists()


@needs_ray
def test_auto_without_a_cluster_is_one_line(tmp_path, capfd, monkeypatch):
    import ray as ray_mod

    def no_cluster(*args, **kwargs):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray_mod, "init", no_cluster)
    monkeypatch.setattr(ray_mod, "is_initialized", lambda: False)
    results = tmp_path / "results"
    assert main(["run", SMOKE, "--results-dir", str(results), "--executor", "ray", "--address", "auto"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("ssl-bench: error: --address auto: no running Ray cluster found") and "\n" not in err


class StubRay:
    """What check_fits reads of Ray: the alive nodes and their resources."""

    def __init__(self, *resources: dict) -> None:
        self._nodes = [{"Alive": True, "Resources": r} for r in resources] + [{"Alive": False, "Resources": {"GPU": 8}}]

    def nodes(self) -> list[dict]:
        return self._nodes


def test_a_run_no_node_can_hold_is_refused_on_a_local_ray_and_warned_of_on_a_cluster():
    from ssl_bench.errors import ConfigError
    from ssl_bench.executor.ray_tasks import check_fits

    notes: list[str] = []
    two_cpus, gpu_node = {"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}
    check_fits(StubRay(two_cpus, gpu_node), 4, 0.5, None, notes.append)  # fits on the GPU node
    check_fits(StubRay(two_cpus), 2, 0.0, None, notes.append)
    assert notes == []
    with pytest.raises(ConfigError, match=r"asks for 1 CPU\(s\) and 0.5 GPU\(s\).*Ray has 2 CPU\(s\) and 0 GPU\(s\)"):
        check_fits(StubRay(two_cpus), 1, 0.5, None, notes.append)  # the dead node's 8 GPUs do not count
    with pytest.raises(ConfigError, match=r"asks for 9 CPU\(s\) \(--cpus-per-run"):
        check_fits(StubRay(two_cpus, gpu_node), 9, 0.0, None, notes.append)
    check_fits(StubRay(two_cpus), 1, 1.0, "head:6379", notes.append)  # a cluster's autoscaler may add a node
    assert notes == ["ssl-bench: warning: no node of the cluster has 1 CPU(s) and 1 GPU(s) now (the largest: 2 CPU(s) "
                     "and 0 GPU(s)); runs wait for one"]  # fmt: skip


@pytest.mark.slow
@needs_ray
def test_gpus_per_run_on_a_machine_without_a_gpu_is_an_error_not_a_wait(tmp_path, capfd):
    results = tmp_path / "results"
    started = time.monotonic()
    assert main(["run", SMOKE, "--results-dir", str(results), "--executor", "ray", "--gpus-per-run", "64"]) == 2
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ssl-bench: error: each run asks for 1 CPU(s) and 64 GPU(s)") and err.endswith(
        "no run could start"
    )
    assert time.monotonic() - started < 60 and not results.exists()


@pytest.mark.slow
def test_ctrl_c_stops_local_workers_quietly_and_keeps_their_checkpoints(tmp_path):
    """Ctrl-C reaches the whole process group: the driver says it was interrupted and exits 130; no worker prints
    a traceback and no semaphore is left for the resource tracker to warn of; each run's checkpoint stays."""
    import subprocess
    import sys

    results = tmp_path / "results"
    sets = ["train.steps=20000", "train.checkpoint_every=50", "grid.seeds=[1, 2]"]
    hashes = [p.config_hash for p in planned(results, sets)]
    argv = [sys.executable, "-m", "ssl_bench.cli", "run", SMOKE, "--results-dir", str(results), "--workers", "2"]
    argv += [a for s in sets for a in ("--set", s)]
    # Ctrl-C as in a terminal: a shell's background job (`make test-slow &`, nohup) hands its children SIGINT
    # ignored, and a Python started so never turns it into KeyboardInterrupt
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not all(checkpoint_path(results, h).exists() for h in hashes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the grid ended before it could be interrupted"
    workers = [read_holder(lock_path(results, h))["pid"] for h in hashes]
    for pid in workers:  # a worker leaves SIGINT to the driver: alone, it changes nothing
        os.kill(pid, signal.SIGINT)
    time.sleep(1.0)
    for pid in workers:
        os.kill(pid, 0)  # still alive (ProcessLookupError otherwise)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "ssl-bench: interrupted"
    assert "Traceback" not in err and "leaked semaphore" not in err and "SpawnProcess" not in err, err[-2000:]
    assert all(checkpoint_path(results, h).exists() for h in hashes) and load_records(results) == []


@pytest.mark.slow
@needs_ray
def test_a_cluster_started_with_ray_start_takes_the_grid_by_auto_and_by_address(tmp_path):
    """The README's cluster commands against a real `ray start --head` (token authentication on, Ray's default):
    ``--address auto`` finds it; an explicit HOST:PORT works with RAY_AUTH_MODE=token, and without it is refused in
    one line that says so."""
    import shutil
    import socket
    import subprocess
    import sys

    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    head = [ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard=false"]
    subprocess.run([*head, "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
    try:

        def grid(address, seeds, **extra):
            argv = [sys.executable, "-m", "ssl_bench.cli", "run", SMOKE, "--results-dir", str(tmp_path / "r")]
            argv += ["--executor", "ray", "--workers", "2", "--address", address, "--set", f"grid.seeds={seeds}"]
            argv += ["--set", "train.steps=20", "--set", "train.eval_every=10"]
            return subprocess.run(argv, env={**env, **extra}, capture_output=True, text=True, timeout=240)

        auto = grid("auto", "[1, 2]")
        assert auto.returncode == 0 and "runs: done 2 · skipped 0 · failed 0" in auto.stderr, auto.stderr[-2000:]
        explicit = grid(f"127.0.0.1:{port}", "[1, 2, 3]", RAY_AUTH_MODE="token")
        assert explicit.returncode == 0 and "runs: done 1 · skipped 2 · failed 0" in explicit.stderr
        assert len(load_records(tmp_path / "r")) == 3
        refused = grid(f"127.0.0.1:{port}", "[4]")
        last = refused.stderr.strip().splitlines()[-1]
        assert refused.returncode == 2 and last.startswith(f"ssl-bench: error: --address 127.0.0.1:{port}: ")
        assert "takes an explicit address only with RAY_AUTH_MODE=token" in last and "Traceback" not in refused.stderr
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_cpus_per_run_sets_the_threads_of_runs_trained_in_this_process(tmp_path):
    """--workers 1 trains in the calling process: --cpus-per-run is its runs' thread count there too (it was
    accepted and ignored)."""
    sets = [a for s in [*TINY, "grid.seeds=[1]"] for a in ("--set", s)]
    assert main(["run", SMOKE, *sets, "--results-dir", str(tmp_path), "--cpus-per-run", "1", "--quiet"]) == 0
    (rec,) = load_records(tmp_path)
    assert rec["speed"]["threads"] == 1
