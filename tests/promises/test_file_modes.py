"""Files the suite writes get the mode a plain ``open`` gives a new file (0666 less the umask), not mkstemp's 0600:
a results directory shared by a group must be readable by the group."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ssl_bench.atomic_write import atomic_write_text, umask
from ssl_bench.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=[0o022, 0o027, 0o002], ids=["022", "027", "002"])
def mask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_umask_reads_the_process_umask_and_leaves_it(mask):
    assert umask() == mask
    assert umask() == mask  # reading it did not change it


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, mask):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what the OS gives a new file under this umask: the independent expectation
    atomic_write_text(tmp_path / "atomic.json", "{}\n")
    atomic_write_text(tmp_path / "atomic.json", "{}\n")  # a replacement too, not just a first write
    assert mode(plain) == 0o666 & ~mask
    assert mode(tmp_path / "atomic.json") == mode(plain)


def test_a_filesystem_that_refuses_modes_still_gets_the_write(tmp_path, monkeypatch):
    def refuse(fd, mode):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refuse)  # as vfat or a CIFS mount answer a chmod
    atomic_write_text(tmp_path / "r.json", "{}\n")
    assert (tmp_path / "r.json").read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


@pytest.mark.parametrize("run_mask", [0o027, 0o002], ids=["027", "002"])
def test_a_run_writes_every_file_with_the_umask_mode(tmp_path, monkeypatch, run_mask):
    """Under 027 the group reads every file; under 002 it may also write them (the leaderboard's lock file, which
    stays in place, must open read-write for the next member's generation)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the kept plots of published numbers
    old = os.umask(run_mask)
    try:
        rc = main(
            [
                "run",
                str(ROOT / "recipes/smoke.toml"),
                "--set",
                "train.steps=4",
                "--set",
                "train.eval_every=2",
                "--set",
                f"data.root={str(tmp_path / 'data')!r}",
                "--results-dir",
                str(tmp_path / "res"),
                "--quiet",
            ]
        )
    finally:
        os.umask(old)
    assert rc == 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    kinds = {p.relative_to(tmp_path).parts[0] + ":" + p.suffix for p in files}
    # records, split manifests, the leaderboard pages and plots, the digits array cache, the kept plots
    assert {"res:.json", "res:.md", "res:.html", "res:.png", "data:.npz", "cache:.png"} <= kinds
    assert any(p.parent.name == ".locks" for p in files)
    wrong = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files if mode(p) != 0o666 & ~run_mask}
    assert wrong == {}
