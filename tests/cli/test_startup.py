"""What every ssl-bench command pays before and after its work: the driver that only plans does not import the
modules that training alone needs, and the console script exits without walking the heap (cli.script)."""

from __future__ import annotations

import subprocess
import sys

from ssl_bench.data.digits import digits_arrays
from tests.conftest import ROOT


def in_fresh_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()


def test_planning_a_recipe_imports_neither_dynamo_nor_scikit_learn(tmp_path):
    """A driver whose runs train in workers plans every run; the first torch.optim optimizer of a process imports
    torch._dynamo (≈1.7 s) and scikit-learn costs ≈1.8 s, so planning builds no optimizer and reads the digits
    from their cache (warmed here)."""
    root = tmp_path / "data"
    digits_arrays(root)
    code = (
        "import sys; from pathlib import Path; from ssl_bench.plan import load_recipe, plan; "
        f"r = load_recipe(Path('recipes/smoke.toml'), ['data.root=' + repr({str(root)!r})]); "
        f"ps = plan(r, Path({str(tmp_path / 'results')!r})); "
        "print(len(ps), 'torch._dynamo' in sys.modules, 'sklearn' in sys.modules)"
    )
    assert in_fresh_python(code).split() == ["1", "False", "False"]


def test_the_console_script_freezes_the_heap_before_exit():
    code = (
        "import gc, sys; from ssl_bench.cli import script; sys.argv = ['ssl-bench', 'list', 'models']; "
        "n = script(); print(n, gc.get_freeze_count() > 0)"
    )
    assert in_fresh_python(code).splitlines()[-1].split() == ["0", "True"]
