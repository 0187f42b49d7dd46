"""Benchmarks that print numbers (and can write JSON): ``augment`` (batched policies against per-image PIL) and
``train`` (the trainer's step against a peer-style DataLoader + PIL pipeline, ``reference``) and ``grid`` (one grid
under several executors)."""

from __future__ import annotations

from typing import Any


def provenance() -> dict[str, Any]:
    """Where a benchmark's numbers come from, written beside them in its JSON: the machine (CPU model and cores,
    as records name it) and the commit, so that figures from two machines or commits are not mixed up."""
    from ssl_bench.results.provenance import git_state, host_info, now_iso

    commit, dirty = git_state()
    return {"host": host_info(), "git_commit": commit, "git_dirty": dirty, "created_at": now_iso()}
