"""Algorithms from outside the package: a recipe's ``plugins``, ``--plugin`` (a module or a file), the
``ssl_bench.plugins`` entry points, the plugin's source in the run's identity and record, ``ssl-bench check``, and
one-line errors for bad plugins.

Everything that imports a plugin runs ``ssl-bench`` in a subprocess, as a user would, so the registry of this test
process never holds an out-of-tree algorithm.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ssl_bench.config import RunConfig
from ssl_bench.identity import run_hash
from ssl_bench.plan import expand, load_recipe
from ssl_bench.plugins import beside, provenance
from ssl_bench.registry import ALGORITHMS
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "temporal_ensembling.py"
RECIPE = ROOT / "examples" / "temporal_ensembling.toml"
TINY = [
    "grid.seeds=[1]",
    "grid.n_labels=[20]",
    "train.steps=6",
    "train.eval_every=3",
    "train.median_k=2",
    "data.image_size=8",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str, pythonpath: Path | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath) if pythonpath else ""}
    exe = ROOT / ".venv/bin/ssl-bench"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ssl_bench.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def run_args(recipe: Path, results: Path) -> list[str]:
    args = ["run", str(recipe), "--results-dir", str(results), "--quiet"]
    for o in TINY:
        args += ["--set", o]
    return args


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("*.json"))]


def test_builtin_components_have_no_provenance_and_keep_their_hash():
    assert provenance(ALGORITHMS.get(n) for n in ALGORITHMS.names()) == []
    # golden: the committed record leaderboard/runs/digits/fixmatch/digits.1@20-100-d3369a85203d.json
    run = next(r for r in expand(load_recipe(ROOT / "recipes/digits/fixmatch.toml")) if r.seed == 1)
    assert run.data.n_labels == 20 and "plugins" not in run.to_dict()
    assert run_hash(run) == "d3369a85203d402aec003cbf0522c455349c4ce7fd87dbd231428c0ad3a70078"


def test_every_committed_record_is_reproduced_by_its_recipe():
    """No restructuring may change a config hash: every committed record's hash comes out of a recipe."""
    hashes = {run_hash(r) for path in ROOT.glob("recipes/**/*.toml") for r in expand(load_recipe(path))}
    committed = {json.loads(p.read_text())["config_hash"] for p in (ROOT / "leaderboard/runs").rglob("*.json")}
    assert committed and committed <= hashes, sorted(committed - hashes)[:3]


def test_provenance_hashes_every_loaded_module_of_the_plugin_package(tmp_path, monkeypatch):
    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("SCALE = 2\n")
    (pkg / "algo.py").write_text("from plugpkg.helpers import SCALE\n\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from plugpkg.algo import Thing

    try:
        got = provenance([Thing, ALGORITHMS.get("fixmatch")])
        assert got == [
            {"module": "plugpkg", "sha256": sha256(pkg / "__init__.py")},
            {"module": "plugpkg.algo", "sha256": sha256(pkg / "algo.py")},
            {"module": "plugpkg.helpers", "sha256": sha256(pkg / "helpers.py")},
        ]
        fake = types.SimpleNamespace(__module__="ssl_bench.algorithms.fixmatch")
        assert provenance([fake]) == []
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "plugpkg"]:
            del sys.modules[name]


def test_plugins_enter_the_config_hash():
    run = expand(load_recipe(ROOT / "recipes/smoke.toml"))[0]
    with_plugin = RunConfig(**{**run.__dict__, "plugins": [{"module": "m", "sha256": "0" * 64}]})
    edited = RunConfig(**{**run.__dict__, "plugins": [{"module": "m", "sha256": "1" * 64}]})
    assert len({run_hash(run), run_hash(with_plugin), run_hash(edited)}) == 3
    assert with_plugin.to_dict()["plugins"] == [{"module": "m", "sha256": "0" * 64}]


@pytest.mark.slow
def test_recipe_plugin_runs_is_recorded_and_an_edit_is_a_new_run(tmp_path):
    results = tmp_path / "results"
    proc = cli(*run_args(RECIPE, results), pythonpath=ROOT / "examples")
    assert proc.returncode == 0, proc.stderr
    (rec,) = records(results)
    expected = [{"module": "temporal_ensembling", "sha256": sha256(EXAMPLE)}]
    assert rec["algorithm"] == "temporal_ensembling" and rec["plugins"] == expected
    assert rec["config"]["plugins"] == expected and rec["config"]["algorithm"]["alpha"] == 0.6
    again = cli(*run_args(RECIPE, results), pythonpath=ROOT / "examples")
    assert again.returncode == 0 and "already recorded" in again.stderr
    # the same recipe with an edited copy of the plugin (one changed constant): a new identity, trained again
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "temporal_ensembling.py").write_text(
        EXAMPLE.read_text().replace('Range("[0, 1)")] = 0.6', 'Range("[0, 1)")] = 0.5')
    )
    shutil.copy(RECIPE, edited / "temporal_ensembling.toml")
    third = cli(*run_args(edited / "temporal_ensembling.toml", results), pythonpath=edited)
    assert third.returncode == 0 and "already recorded" not in third.stderr, third.stderr
    recs = records(results)
    assert len(recs) == 2 and len({r["config_hash"] for r in recs}) == 2
    assert {r["plugins"][0]["sha256"] for r in recs} == {sha256(EXAMPLE), sha256(edited / "temporal_ensembling.py")}


@pytest.mark.slow
def test_plugin_flag_list_and_check(tmp_path):
    without = cli("list", "algorithms")
    assert without.returncode == 0 and "temporal_ensembling" not in without.stdout
    listed = cli("list", "algorithms", "--plugin", "temporal_ensembling", pythonpath=ROOT / "examples")
    assert listed.returncode == 0 and "temporal_ensembling" in listed.stdout.split(": ", 1)[1].split(", ")
    check = cli(
        "check", "temporal_ensembling", "--plugin", "temporal_ensembling", "--slow", pythonpath=ROOT / "examples"
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok   check_resume_through_trainer" in check.stdout and "8 passed, 0 failed" in check.stdout
    # a recipe without a plugins key, loaded through --plugin
    plain = tmp_path / "plain.toml"
    plain.write_text(RECIPE.read_text().replace('plugins = ["temporal_ensembling"]', ""))
    proc = cli(*run_args(plain, tmp_path / "r"), "--plugin", "temporal_ensembling", pythonpath=ROOT / "examples")
    assert proc.returncode == 0, proc.stderr
    assert records(tmp_path / "r")[0]["plugins"] == [{"module": "temporal_ensembling", "sha256": sha256(EXAMPLE)}]


def test_a_recipes_plugin_files_are_read_from_its_folder_and_module_names_are_left_alone():
    folder = Path("recipes/mine")
    names = ["my_algo.py", "sub/helper.py", "/abs/x.py", "my_pkg.my_algo", "../evil", 3]
    assert beside(names, folder) == ["recipes/mine/my_algo.py", "recipes/mine/sub/helper.py", "/abs/x.py",
                                     "my_pkg.my_algo", "../evil", 3]  # fmt: skip
    assert beside("my_algo.py", folder) == "my_algo.py"  # not a list: refused later with the usual message


@pytest.mark.slow
def test_a_plugin_file_runs_with_the_identity_of_the_same_module_on_pythonpath(tmp_path):
    """A recipe's ``plugins = ["temporal_ensembling.py"]`` beside it, run from another folder without PYTHONPATH: the
    record names the module and the file's sha256, and the run is the one made by module name, and by --plugin FILE."""
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(EXAMPLE, mine / "temporal_ensembling.py")
    recipe = mine / "te.toml"
    recipe.write_text(
        RECIPE.read_text().replace('plugins = ["temporal_ensembling"]', 'plugins = ["temporal_ensembling.py"]')
    )
    assert 'plugins = ["temporal_ensembling.py"]' in recipe.read_text()
    results = tmp_path / "results"
    proc = cli(*run_args(recipe, results))
    assert proc.returncode == 0, proc.stderr
    (rec,) = records(results)
    assert rec["plugins"] == [{"module": "temporal_ensembling", "sha256": sha256(EXAMPLE)}]
    by_module = cli(*run_args(RECIPE, results), pythonpath=ROOT / "examples")
    assert by_module.returncode == 0 and "already recorded" in by_module.stderr, by_module.stderr
    plain = tmp_path / "plain.toml"
    plain.write_text(RECIPE.read_text().replace('plugins = ["temporal_ensembling"]', ""))
    relative = os.path.relpath(mine / "temporal_ensembling.py", ROOT)  # from the working folder, as a user types it
    by_flag = cli(*run_args(plain, results), "--plugin", relative)
    assert by_flag.returncode == 0 and "already recorded" in by_flag.stderr, by_flag.stderr
    assert len(records(results)) == 1


REGISTERS = "from ssl_bench.registry import ALGORITHMS\nALGORITHMS.register('filealgo')(type('A', (), {{}}))\n{}"


@pytest.mark.slow
def test_plugin_files_register_once_and_are_refused_in_one_line_naming_the_file(tmp_path):
    for folder, name, tail in (
        ("a", "x", ""),
        ("b", "y", ""),
        ("c", "x", ""),
        ("d", "bad", "def (:\n"),
        ("f", "my-algo", ""),
    ):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.py").write_text(REGISTERS.format(tail))
    here = os.path.relpath(tmp_path, ROOT)  # plugin files named from the working folder (ROOT), as a user types them
    twice = cli("list", "algorithms", "--plugin", f"{tmp_path}/a/x.py", "--plugin", f"./{here}/a/../a/x.py")
    assert twice.returncode == 0, twice.stderr
    assert twice.stdout.split(": ", 1)[1].strip().split(", ").count("filealgo") == 1
    refused = {
        ("a/x.py", "b/y.py"): ["b/y.py failed to import", "duplicate algorithm name 'filealgo'"],
        ("a/x.py", "c/x.py"): ["c/x.py: a module named 'x' is already loaded", "rename the file"],
        ("a/x.py", "e/none.py"): ["e/none.py not found"],
        ("d/bad.py",): ["d/bad.py failed to import", "invalid syntax"],
        ("f/my-algo.py",): ["f/my-algo.py: name it like a Python module"],
        ("a",): ["plugin module 'a' not found"],  # a bare word stays a module name
    }
    for files, messages in refused.items():
        proc = cli("list", "algorithms", *[f"--plugin={f}" if f == "a" else f"--plugin={tmp_path}/{f}" for f in files])
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"plugin file {tmp_path}/" in proc.stderr or files == ("a",), proc.stderr
        assert all(m in proc.stderr for m in messages), proc.stderr


BROKEN_ALGORITHM = '''
from dataclasses import dataclass
import torch
from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.augment.views import ViewSpec
from ssl_bench.registry import ALGORITHMS


@dataclass(frozen=True)
class NanConfig(AlgorithmConfig):
    """Cites arXiv 0000.00000."""
    name: str = "nanloss"


@ALGORITHMS.register("nanloss")
class NanLoss(Algorithm):
    Config = NanConfig

    def views(self):
        return ViewSpec(labeled=("weak",))

    def step(self, batch, progress):
        loss = self.model(batch.x[0]).sum() * float("nan")
        return loss, {"loss/x": loss.detach()}
'''


@pytest.mark.slow
def test_check_reports_a_failing_algorithm(tmp_path):
    (tmp_path / "nanloss.py").write_text(BROKEN_ALGORITHM)
    proc = cli("check", "nanloss", "--plugin", "nanloss", pythonpath=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL check_finite: AssertionError: loss nan" in proc.stdout
    assert "ok   check_config" in proc.stdout and "failed" in proc.stdout.splitlines()[-1]


@pytest.mark.slow
def test_entry_point_plugins_load_without_flags(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "pl_entry.py")
    dist = tmp_path / "pl_entry-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pl-entry\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ssl_bench.plugins]\ntemporal_ensembling = pl_entry\n")
    listed = cli("list", "algorithms", pythonpath=tmp_path)
    assert listed.returncode == 0 and "temporal_ensembling" in listed.stdout, listed.stderr
    plain = tmp_path / "plain.toml"
    plain.write_text(RECIPE.read_text().replace('plugins = ["temporal_ensembling"]', ""))
    proc = cli(*run_args(plain, tmp_path / "r"), pythonpath=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert records(tmp_path / "r")[0]["plugins"] == [{"module": "pl_entry", "sha256": sha256(EXAMPLE)}]
    (dist / "entry_points.txt").write_text("[ssl_bench.plugins]\nbroken = no_such_module_xyz\n")
    bad = cli("list", pythonpath=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "entry point broken = no_such_module_xyz of pl-entry (group ssl_bench.plugins) failed to load" in bad.stderr


BAD_PLUGINS = {
    "missing": ("nosuch_plugin_xyz", None, "plugin module 'nosuch_plugin_xyz' not found: put its folder on PYTHONPATH"),
    "crashes on import": ("crashy", "raise RuntimeError('boom')\n", "plugin module 'crashy' failed to import"),
    "duplicate name": (
        "dupe",
        "from ssl_bench.registry import ALGORITHMS\nALGORITHMS.register('fixmatch')(object)\n",
        "duplicate algorithm name 'fixmatch'",
    ),
    "not a module name": ("../evil", None, "plugins: '../evil' is not a module name"),
    "exits on import": (
        "exits",
        "import sys\nsys.exit(0)\n",
        "plugin module 'exits' called sys.exit(0) while being imported",
    ),
    "a name that leaves the results directory": (
        "evil_name",
        "from ssl_bench.registry import ALGORITHMS\nALGORITHMS.register('../evil')(object)\n",
        "invalid algorithm name '../evil'",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_PLUGINS))
def test_bad_plugins_are_one_line_errors(case, tmp_path):
    module, source, message = BAD_PLUGINS[case]
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"plugins = [{json.dumps(module)}]\n" + (ROOT / "recipes/smoke.toml").read_text())
    proc = cli("run", str(recipe), "--results-dir", str(tmp_path / "res"), pythonpath=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("ssl-bench: error: ")
    assert message in proc.stderr
    assert not (tmp_path / "res").exists()


@pytest.mark.slow
def test_a_plugin_that_takes_a_built_in_name_is_refused_in_one_line_whatever_imports_first(tmp_path):
    """On `list --plugin` the plugin was imported before the built-in algorithms: their own registration then raised
    the duplicate-name ValueError with a traceback."""
    (tmp_path / "dupe_first.py").write_text(
        "from ssl_bench.registry import ALGORITHMS\nALGORITHMS.register('supervised')(object)\n"
    )
    for command in (["list"], ["list", "algorithms"], ["check", "supervised"]):
        proc = cli(*command, "--plugin", "dupe_first", pythonpath=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert "plugin module 'dupe_first' failed to import" in proc.stderr
        assert "duplicate algorithm name 'supervised'" in proc.stderr


@pytest.fixture
def example_plugin(monkeypatch):
    """The example plug-in importable (examples/ on sys.path), registering into a copy of the algorithm registry:
    the real one, and sys.modules, stay as they were."""
    from ssl_bench.registry import Registry

    reg: Registry = Registry("algorithm")
    for name in ALGORITHMS.names():
        reg.add(name, ALGORITHMS.get(name))
    monkeypatch.setattr("ssl_bench.registry.ALGORITHMS", reg)
    monkeypatch.setattr("ssl_bench.algorithms.ALGORITHMS", reg)
    monkeypatch.setattr("ssl_bench.plan.ALGORITHMS", reg)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    yield
    sys.modules.pop("temporal_ensembling", None)


def test_the_example_plugin_keeps_state_by_image_position_and_reads_the_teacher(tmp_path, example_plugin):
    """The out-of-tree example reads batch.idx_u (its per-image buffers grow only at pool positions, once per
    draw) and, with ensemble_of = "teacher", fills its memory from the teacher's predictions."""
    import torch

    from ssl_bench.data import load_data
    from ssl_bench.data.splits import get_run_split
    from ssl_bench.plan import plan
    from ssl_bench.plugins import import_plugins
    from ssl_bench.train import Trainer

    import_plugins(["temporal_ensembling"])
    sets = [
        "grid.seeds=[1]",
        "grid.n_labels=[20]",
        "train.steps=3",
        "train.precision=fp32",
        'algorithm.ensemble_of="teacher"',
    ]
    (p,) = plan(load_recipe(RECIPE, sets), tmp_path)
    ds = load_data(p.run.data)
    split = get_run_split(ds, p.run.data, p.run.seed, tmp_path / "splits")
    trainer = Trainer(p.run, ds, split, p.config_hash)
    algo = trainer.algorithm
    seen = []
    step = algo.step

    def watched(batch, progress):
        if not seen:
            with torch.no_grad(), trainer.speed.autocast(trainer.device):
                seen.append((batch.idx_u.clone(), algo.teacher(batch.u[0]).float().softmax(dim=1)))
        return step(batch, progress)

    algo.step = watched
    for _ in range(3):
        trainer.train_step()
    idx, teacher_probs = seen[0]
    pool = set(split.pool(len(ds.train_labels), split.labeled, True).tolist())
    drawn = algo.updates.nonzero().flatten().tolist()
    assert set(drawn) <= pool and int(algo.updates.sum()) == 3 * 32  # three steps of B = 32 unlabeled images
    first = [i for i in idx.tolist() if int(algo.updates[i]) == 1]  # drawn in the first step only
    assert first
    torch.testing.assert_close(algo.ensemble[first], 0.4 * teacher_probs[[idx.tolist().index(i) for i in first]])


def test_a_plugin_files_neighbours_never_shadow_a_library(tmp_path, monkeypatch):
    """The folder of a plug-in file joins the import path at its end: a sibling named like a standard module (here
    colorsys.py, which nothing has imported yet) must not replace that module for the rest of the process."""
    import sys

    from ssl_bench.plugins import import_plugins

    (tmp_path / "shadow_probe_plugin.py").write_text("VALUE = 1\n")
    (tmp_path / "colorsys.py").write_text("SHADOW = True\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    try:
        import_plugins([str(tmp_path / "shadow_probe_plugin.py")])
        assert sys.modules["shadow_probe_plugin"].VALUE == 1 and sys.path[-1] == str(tmp_path)
        import colorsys

        assert not hasattr(colorsys, "SHADOW"), colorsys.__file__
    finally:
        sys.modules.pop("shadow_probe_plugin", None)
        sys.modules.pop("colorsys", None)
