"""A record names the commit of the code that trained it: the checkout as the training process found it, dirty if
the checkout differed from that commit at any point up to the record (results.provenance.git_state)."""

import json
import subprocess
from pathlib import Path

import pytest

from ssl_bench.cli import main
from ssl_bench.results import provenance
from ssl_bench.results.provenance import Checkout, git_state, read_checkout
from tests.conftest import ROOT

SMOKE = str(ROOT / "recipes/smoke.toml")
TOP = Path("/repo")
A, B = "a" * 40, "b" * 40


def co(head=A, *changed):
    return Checkout(TOP, head, tuple(changed))


@pytest.mark.parametrize(
    "changed, results_dir, dirty",
    [
        ((), None, False),
        (("ssl_bench/train/trainer.py",), None, True),
        (("README.md",), None, True),
        (("leaderboard/README.md", "leaderboard/runs/digits/x.json"), None, False),
        (("results/runs/x.json",), TOP / "results", False),
        (("results/runs/x.json",), Path("/elsewhere"), True),
        (("leaderboards/x.py",), None, True),  # a sibling whose name starts alike is not leaderboard/
    ],
)
def test_what_counts_as_dirty(changed, results_dir, dirty):
    assert co(A, *changed).dirty(results_dir) is dirty


@pytest.fixture
def checkouts(monkeypatch):
    """Feed git_state a sequence of checkouts, with the process's start not yet noted."""
    monkeypatch.setattr(provenance, "_code_checkout", provenance._UNREAD)

    def feed(*seq):
        it = iter(seq)
        monkeypatch.setattr(provenance, "read_checkout", lambda where=None: next(it))

    return feed


@pytest.mark.parametrize(
    "start, now, expected",
    [
        (co(A), co(A), (A, False)),
        (co(A), co(B), (A, True)),  # a commit during the run: the record names the code that ran, marked dirty
        (co(A), co(A, "ssl_bench/x.py"), (A, True)),  # an edit during the run
        (co(A, "ssl_bench/x.py"), co(A), (A, True)),  # an edit undone during the run: it trained on the edit
        (co(A, "leaderboard/README.md"), co(A, "leaderboard/index.html"), (A, False)),
        (None, co(A), (None, None)),
        (co(A), None, (None, None)),
    ],
)
def test_the_record_names_the_commit_noted_when_training_began(checkouts, start, now, expected):
    checkouts(start, now)
    provenance.note_code_checkout()
    provenance.note_code_checkout()  # only the first note counts: later runs of the process keep it
    assert git_state() == expected


def test_without_a_note_the_checkout_now_is_named(checkouts):
    checkouts(co(B, "ssl_bench/x.py"))
    assert git_state() == (B, True)


def test_a_run_names_the_commit_it_started_at_when_head_moves_before_its_record(tmp_path, checkouts):
    checkouts(co(A), co(B))  # the runner notes A before training; HEAD is B when the record is written
    results_dir = tmp_path / "r"
    assert (
        main(["run", SMOKE, "--results-dir", str(results_dir), "--set", "train.steps=4", "--set", "train.eval_every=2"])
        == 0
    )
    (path,) = (results_dir / "runs").rglob("*.json")
    record = json.loads(path.read_text())
    assert (record["git_commit"], record["git_dirty"]) == (A, True)


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_read_checkout_lists_changed_tracked_paths_renames_with_both_names(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    for name in ("pkg/a.py", "pkg/b.py", "c.txt"):
        (repo / name).write_text(name)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    clean = read_checkout(repo / "pkg")
    assert clean is not None and clean.top == repo.resolve() and len(clean.head) == 40 and clean.changed == ()
    (repo / "pkg/a.py").write_text("edited")
    git(repo, "mv", "c.txt", "d.txt")
    (repo / "untracked.py").write_text("not counted")
    assert sorted(read_checkout(repo / "pkg").changed) == ["c.txt", "d.txt", "pkg/a.py"]


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert read_checkout(tmp_path) is None
