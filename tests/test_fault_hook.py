"""The test-only fault hook of atomic writes (``SSL_BENCH_FAULT``): a write killed or failing half-way leaves the
previous file intact, readers see no partial file, and the CLI reports a full disk in one line."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from ssl_bench import fault_hook
from ssl_bench.atomic_write import atomic_write_bytes, atomic_write_text, remove_stale_temps
from ssl_bench.cli import main
from ssl_bench.errors import ConfigError, WriteError
from ssl_bench.fault_hook import Fault
from ssl_bench.results.store import load_records, scan_records
from tests.conftest import ROOT

OLD = {"algorithm": "supervised", "acc_median": 0.5, "config_hash": "a" * 64, "note": "old"}
NEW = {**OLD, "acc_median": 0.75, "note": "new " * 200}

KILLED_WRITER = """
import json, sys
from pathlib import Path
from ssl_bench.atomic_write import atomic_write_text
path = Path(sys.argv[1])
atomic_write_text(path, sys.argv[2])  # the first record write of the process
atomic_write_text(path, sys.argv[3])  # the second: killed half-way
print("not reached")
"""


def test_unset_hook_costs_nothing():
    assert os.environ.get(fault_hook.FAULT_ENV) or fault_hook.ACTIVE is None


def test_kinds_and_malformed_values(tmp_path):
    assert Fault.parse("record:3").__dict__ == {"mode": "kill", "kind": "record", "n": 3, "seen": 0}
    assert Fault.parse("enospc:checkpoint:1").mode == "enospc"
    assert Fault.parse("checkpoint:1").matches(tmp_path / ".checkpoints" / "abc.pt")
    assert Fault.parse("record:1").matches(tmp_path / "runs" / "digits" / "fixmatch" / "r.json")
    assert not Fault.parse("record:1").matches(tmp_path / "splits" / "digits.1@40-0.json")
    assert Fault.parse("manifest:1").matches(tmp_path / "splits" / "digits.1@40-0.json")
    for bad in ("record", "disk:record:1", "record:x", "oops:1", "enospc:record"):
        with pytest.raises(ConfigError, match="SSL_BENCH_FAULT"):
            Fault.parse(bad)


def test_a_record_write_killed_half_way_leaves_the_old_record(tmp_path):
    path = tmp_path / "runs" / "digits" / "supervised" / "digits.1@40-0-aaaaaaaaaaaa.json"
    old, new = json.dumps(OLD), json.dumps(NEW)
    env = {**os.environ, fault_hook.FAULT_ENV: "record:2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), old, new], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL and b"not reached" not in proc.stdout
    assert path.read_text() == old
    (tmp,) = path.parent.glob(f".{path.name}.*.tmp")  # what the killed writer left: half of the new record
    assert tmp.read_text() == new[: len(new) // 2]
    scan = scan_records(tmp_path)  # the half-written temp file is not a record file: only the old one is read
    assert [p for p, _ in scan.records + scan.unreadable] == [path]
    remove_stale_temps(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_enospc_half_way_raises_and_leaves_the_old_file(tmp_path, monkeypatch):
    monkeypatch.setattr(fault_hook, "ACTIVE", Fault.parse("enospc:checkpoint:2"))
    path = tmp_path / ".checkpoints" / "abc.pt"
    atomic_write_bytes(path, b"old checkpoint")
    atomic_write_text(tmp_path / "runs" / "r.json", "{}")  # another kind: not counted
    with pytest.raises(WriteError, match=r"could not write .*abc\.pt: no space left on device"):
        atomic_write_bytes(path, b"new checkpoint" * 100)
    assert path.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in path.parent.iterdir()) == ["abc.pt"]


def test_a_full_disk_during_a_run_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fault_hook, "ACTIVE", Fault.parse("enospc:checkpoint:2"))
    results = tmp_path / "results"
    args = ["run", str(ROOT / "recipes/smoke.toml"), "--results-dir", str(results), "--quiet"]
    assert main([*args, "--set", "train.steps=30", "--set", "train.eval_every=10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ssl-bench: error: could not write ") and ".pt: no space left on device" in err
    (ckpt,) = (results / ".checkpoints").iterdir()  # the first checkpoint (step 10), complete
    assert torch.load(ckpt, weights_only=True)["step"] == 10
    assert load_records(results) == []
