"""Shared fixtures: tiny configs and a throw-away results directory per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"
