"""Shared fixtures: tiny configs and a throw-away results directory per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def files_in(path: Path) -> list[Path]:
    """Every file below ``path`` (none if it does not exist), sorted."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def one_line_error(capsys: pytest.CaptureFixture, message: str) -> str:
    """stderr is one ``ssl-bench: error:`` line holding ``message``, with no traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssl-bench: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"
