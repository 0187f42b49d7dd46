import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssl_bench.cli import main
from ssl_bench.plan import load_recipe
from ssl_bench.results.record import RECORD_KEYS
from ssl_bench.results.store import load_records
from ssl_bench.runner import run_recipe
from tests.conftest import ROOT, files_in

SMOKE = str(ROOT / "recipes/smoke.toml")


def test_smoke_run_records_skips_and_renders(results_dir, capsys):
    assert (
        main(
            ["run", SMOKE, "--results-dir", str(results_dir), "--set", "train.steps=20", "--set", "train.eval_every=10"]
        )
        == 0
    )
    (rec,) = load_records(results_dir)
    assert set(RECORD_KEYS) <= set(rec)
    assert rec["algorithm"] == "supervised" and rec["split"] == "digits.1@40-0" and rec["n_labels"] == 40
    assert rec["steps"] == 20 and rec["images_seen"] == 20 * 32 and len(rec["acc_history"]) == 2
    assert 0 <= rec["acc_median"] <= 1 and rec["median_k"] == 2 and rec["setting"] == "ssl"
    assert rec["round"] is None and rec["acquisition"] is None
    assert rec["config"]["train"]["steps"] == 20 and len(rec["config_hash"]) == 64
    assert rec["versions"]["torch"]
    # the CPU its numbers came from (another CPU gives other numbers): torch's capability, the kernel's CPU id
    assert rec["host"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert rec["host"]["cores"] == os.cpu_count()
    if Path("/proc/cpuinfo").exists():
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
        cpu = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first if ":" in line)}
        assert (
            rec["host"]["cpu_id"] == f"cpu family {cpu['cpu family']} model {cpu['model']} stepping {cpu['stepping']}"
        )
        assert rec["host"]["native_bf16"] == (
            "avx512_bf16" in cpu["flags"].split() or "amx_bf16" in cpu["flags"].split()
        )
    # shown beside results, outside the hash; the file's words, then what --set changed (eval_every: from 20)
    assert rec["recipe"] == {
        "name": "smoke",
        "description": "supervised on digits, 60 steps: the smallest end-to-end run "
        "(changed by --set train.steps=20 train.eval_every=10)",
    }
    out = capsys.readouterr()
    assert "| supervised" in out.out and "(n=1)" in out.out
    readme = (results_dir / "README.md").read_text()
    assert readme.startswith("# Leaderboard")
    # the run prints its tables only: the README's protocol notes, plots and published-only datasets stay there
    assert "## Published numbers of datasets with no runs here yet" in readme and "![digits" in readme
    assert "Published numbers" not in out.out and "![" not in out.out and "# Leaderboard" not in out.out
    assert out.out.splitlines()[-1].endswith(f"{results_dir}/README.md and {results_dir}/index.html")
    assert len(out.out.splitlines()) < len(readme.splitlines()) / 3
    assert not (results_dir / ".checkpoints").exists() or not files_in(results_dir / ".checkpoints")
    before = files_in(results_dir / "runs")
    assert (
        main(
            ["run", SMOKE, "--results-dir", str(results_dir), "--set", "train.steps=20", "--set", "train.eval_every=10"]
        )
        == 0
    )
    assert "already recorded" in capsys.readouterr().err
    assert files_in(results_dir / "runs") == before


def test_list_and_help(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert set(lines["algorithms"].split(", ")) >= {"supervised", "mixmatch", "remixmatch", "fixmatch", "adamatch"}
    assert "digits" in lines["datasets"] and "timm:<name>" in lines["models"]
    assert set(lines["augmentations"].split(", ")) >= {"weak", "randaugment", "ctaugment"}
    import argparse

    from ssl_bench.cli import build_parser

    def commands(parser):  # every (sub)command, walking the subparsers
        yield []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from ([name, *rest] for rest in commands(child))

    every = list(commands(build_parser()))
    assert ["compare"] in every and ["bench", "train"] in every and ["run"] in every
    for cmd in every:  # argparse %-formats help strings: a bare "%" in one is a traceback
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--help"])
        assert exc.value.code == 0, cmd
        out = capsys.readouterr().out
        assert "usage: ssl-bench" in out and "%%" not in out, cmd


def test_split_command_is_deterministic(results_dir, capsys):
    assert main(["split", "digits.1@40-100", "--results-dir", str(results_dir)]) == 0
    first = capsys.readouterr().out
    assert main(["split", "digits.1@40-100", "--results-dir", str(results_dir)]) == 0
    assert capsys.readouterr().out == first
    assert "per class [4, 4, 4, 4, 4, 4, 4, 4, 4, 4]" in first
    manifest = json.loads((results_dir / "splits" / "digits.1@40-100.json").read_text())
    assert manifest["split"] == "digits.1@40-100" and len(manifest["labeled"]) == 40


def test_split_command_refuses_the_budgets_a_run_refuses(results_dir, capsys):
    # 41 balanced labels once drew [5, 4, ..., 4] and wrote its manifest, a split no run could use
    for sid, message in (("digits.1@41-0", "41 labels do not divide into 10 classes"),
                         ("digits.1@5-0", "label budget 5 is smaller than the 10 classes of digits")):  # fmt: skip
        assert main(["split", sid, "--results-dir", str(results_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("ssl-bench: error: ") and message in err and "\n" not in err
        assert (
            main(
                ["run", SMOKE, "--results-dir", str(results_dir), "--set", f"grid.n_labels=[{sid.split('@')[1][:-2]}]"]
            )
            == 2
        )
        assert message in capsys.readouterr().err
    assert files_in(results_dir) == []
    assert main(["split", "digits.-1@40-0", "--results-dir", str(results_dir)]) == 2  # not taken for a domain pair
    assert "invalid split id 'digits.-1@40-0'; expected dataset.seed@labels-valid" in capsys.readouterr().err
    assert main(["split", "digits.1@41-0", "--class-balance", "proportional", "--results-dir", str(results_dir)]) == 0
    assert "labeled (41)" in capsys.readouterr().out


BAD_RUNS = {
    "unknown algorithm": (["--set", "algorithm.name=nosuch"], "unknown algorithm 'nosuch'; valid choices:"),
    "unknown dataset": (["--set", "data.dataset=nosuch"], "unknown dataset 'nosuch'; valid choices:"),
    "unknown model": (["--set", "model.name=nosuch"], "unknown model 'nosuch'; valid choices:"),
    "unknown key": (["--set", "train.nosuch=1"], "unknown key train.nosuch; valid keys in [train]:"),
    "unknown section": (["--set", "nosuch.key=1"], "unknown section or key 'nosuch'"),
    "wrong type": (["--set", "train.steps=abc"], "train.steps: expected int, got 'abc'"),
    "budget below classes": (["--set", "grid.n_labels=[5]"], "smaller than the 10 classes"),
    "budget above pool": (["--set", "grid.n_labels=[5000]"], "exceeds the 1297 training images"),
    "bad optimizer": (["--set", "train.optimizer=rmsprop"], "unknown optimizer 'rmsprop'"),
    # a near miss names the intended name, and the message still lists the valid ones
    "key typo": (
        ["--set", "train.step=3"],
        "unknown key train.step (did you mean train.steps?); valid keys in [train]:",
    ),
    "section typo": (["--set", "trian.steps=3"], "unknown section or key 'trian' (did you mean 'train'?); valid:"),
    "algorithm typo": (["--set", "algorithm.name=fixmach"], "unknown algorithm 'fixmach' (did you mean 'fixmatch'?)"),
    "dataset typo": (
        ["--set", "data.dataset=digts"],
        "unknown dataset 'digts' (did you mean 'digits'?); valid choices:",
    ),
    "model typo": (["--set", "model.name=small-cnn"], "unknown model 'small-cnn' (did you mean 'small_cnn'?)"),
    "augmentation typo": (["--set", "augment.strong=randaugmnt"], "unknown augmentation 'randaugmnt' (did you mean"),
    "list without brackets": (["--set", "grid.seeds=1,2"], "write a list in brackets: grid.seeds=[1,2]"),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_run_inputs(case, results_dir, capsys):
    extra, message = BAD_RUNS[case]
    assert main(["run", SMOKE, "--results-dir", str(results_dir), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert files_in(results_dir) == []


def test_check_of_an_unknown_name_points_to_plugins(capsys):
    """A name a plug-in registers is unknown until the plug-in is loaded: the error says how to load it."""
    assert main(["check", "flexmach"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown algorithm 'flexmach' (did you mean 'flexmatch'?); valid choices:" in err
    assert "comes from a plug-in" in err and "--plugin" in err
    assert "\n" not in err and "Traceback" not in err


def test_bad_recipe_files(tmp_path, results_dir, capsys):
    assert main(["run", str(tmp_path / "none.toml"), "--results-dir", str(results_dir)]) == 2
    assert "recipe file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("not toml [[[")
    assert main(["run", str(bad), "--results-dir", str(results_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not valid TOML" in err and "\n" not in err
    assert files_in(results_dir) == []


def test_missing_dataset_files(tmp_path, results_dir, capsys):
    root = tmp_path / "empty"
    args = ["--set", "data.dataset=cifar10", "--set", f"data.root={json.dumps(str(root))}"]
    assert main(["run", SMOKE, "--results-dir", str(results_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert str(root) in err and "--download" in err and "\n" not in err
    assert files_in(results_dir) == []


def test_manifest_mismatch_is_an_error(results_dir, capsys):
    assert main(["split", "digits.1@40-0", "--results-dir", str(results_dir)]) == 0
    path = results_dir / "splits" / "digits.1@40-0.json"
    m = json.loads(path.read_text())
    m["dataset_fingerprint"] = "0" * 64
    from ssl_bench.data.splits import _content_hash

    m["hash"] = _content_hash(m["split"], m["dataset_fingerprint"], "balanced", m["labeled"], m["valid"])
    path.write_text(json.dumps(m))
    capsys.readouterr()
    before = files_in(results_dir)
    assert main(["run", SMOKE, "--results-dir", str(results_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "fingerprint mismatch" in err and "\n" not in err
    assert files_in(results_dir) == before


def test_corrupted_checkpoint_on_resume(results_dir, capsys):
    recipe = load_recipe(SMOKE, ["train.steps=20", "train.eval_every=10"])
    run_recipe(recipe, results_dir, log=lambda s: None, stop_at=10)
    (ckpt,) = files_in(results_dir / ".checkpoints")
    ckpt.write_bytes(ckpt.read_bytes()[:500])
    assert (
        main(
            ["run", SMOKE, "--results-dir", str(results_dir), "--set", "train.steps=20", "--set", "train.eval_every=10"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "error" in line] == err[-1:]
    assert "is corrupted or unreadable" in err[-1] and "Traceback" not in "".join(err)
    assert load_records(results_dir) == []


def test_resume_through_the_runner(results_dir):
    recipe = load_recipe(SMOKE, ["train.steps=30", "train.eval_every=10"])
    assert run_recipe(recipe, results_dir, log=lambda s: None, stop_at=10) == []
    (resumed,) = run_recipe(recipe, results_dir, log=lambda s: None)
    fresh_dir = results_dir.parent / "fresh"
    (fresh,) = run_recipe(recipe, fresh_dir, log=lambda s: None)
    assert resumed["acc_history"] == fresh["acc_history"] and resumed["acc_median"] == fresh["acc_median"]
    assert files_in(results_dir / ".checkpoints") == []


def test_console_script_error_has_no_traceback(tmp_path):
    exe = ROOT / ".venv/bin/ssl-bench"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ssl_bench.cli"]
    proc = subprocess.run(
        [*cmd, "split", "digits.1@3-0", "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ssl-bench: error: label budget 3 is smaller than the 10 classes of digits"
    assert files_in(tmp_path) == []


def test_run_plans_each_recipe_once(results_dir, monkeypatch, capsys):
    import ssl_bench.plan

    calls = []
    original = ssl_bench.plan.plan
    monkeypatch.setattr(
        ssl_bench.plan, "plan", lambda recipe, rd, **kw: calls.append(recipe.name) or original(recipe, rd, **kw)
    )
    args = [
        "run",
        SMOKE,
        SMOKE,
        "--results-dir",
        str(results_dir),
        "--set",
        "train.steps=10",
        "--set",
        "train.eval_every=5",
    ]
    assert main(args) == 0
    assert calls == ["smoke", "smoke"]  # once per recipe given, none again while running
    assert len(load_records(results_dir)) == 1  # the second copy's run is the same run: recorded once


def test_a_run_changed_by_set_says_so_beside_the_recipe_description(results_dir, capsys):
    """A recipe's description is the file's text ("60 steps"): runs whose --set changed what they compute carry
    the change with it, so the leaderboard never shows "60 steps" beside rows of 40-step runs."""
    base = ["run", SMOKE, "--results-dir", str(results_dir), "--quiet", "--set", "train.eval_every=10"]
    assert main([*base, "--set", "train.steps=20"]) == 0
    # grid, device and progress choices and a value equal to the file's change nothing a run computes
    assert main([*base, "--set", "train.steps=40", "--set", "train.steps=20", "--set", "grid.seeds=[2]",
                 "--device", "cpu", "--set", "model.width=1"]) == 0  # fmt: skip
    assert main([*base, "--set", "train.steps=40"]) == 0
    descriptions = {(r["seed"], r["steps"]): r["recipe"]["description"] for r in load_records(results_dir)}
    plain = "supervised on digits, 60 steps: the smallest end-to-end run"
    assert descriptions == {
        (1, 20): f"{plain} (changed by --set train.eval_every=10 train.steps=20)",
        (2, 20): f"{plain} (changed by --set train.eval_every=10 train.steps=20)",
        (1, 40): f"{plain} (changed by --set train.eval_every=10 train.steps=40)",
    }
    readme = (results_dir / "README.md").read_text()
    (line,) = [x for x in readme.splitlines() if x.startswith("Recipes:")]
    assert line == (
        f"Recipes: `smoke`: {plain} (changed by --set train.eval_every=10 train.steps=20); "
        f"`smoke`: {plain} (changed by --set train.eval_every=10 train.steps=40)"
    )
    assert "train.steps=40" in (results_dir / "index.html").read_text()
    assert main(["run", SMOKE, "--results-dir", str(results_dir / "plain"), "--quiet", "--set", "train.steps=60"]) == 0
    (rec,) = load_records(results_dir / "plain")
    assert rec["recipe"]["description"] == plain
