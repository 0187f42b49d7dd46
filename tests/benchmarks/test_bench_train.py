"""``ssl-bench bench train``: the trainer's own steps timed by phase, the peer-style reference pipeline in turns with
it, and what the reference feeds (PIL views in the model's input range)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_bench.augment.views import to_input
from ssl_bench.benchmarks.reference import PILViews, check_reference, pil_view, to_input_tensor
from ssl_bench.benchmarks.settle import (
    NOT_SETTLED,
    SETTLED,
    UNJUDGED,
    WARMING,
    SettleRule,
    note,
    rule_of_flag,
    verdict,
    warm_up_done,
)
from ssl_bench.benchmarks.train import race
from ssl_bench.cli import main
from ssl_bench.errors import ConfigError
from ssl_bench.plan import expand, load_recipe
from tests.conftest import ROOT

SMOKE = str(ROOT / "recipes/smoke.toml")


def test_pil_views_are_the_model_input():
    g = np.random.default_rng(0)
    rgb = g.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(rgb[2])
    expected = to_input(torch.from_numpy(rgb[2]).permute(2, 0, 1)[None])[0]  # x * 2/255 - 1 of the trainer
    assert torch.allclose(to_input_tensor(img), expected)
    grey = g.integers(0, 256, (4, 8, 8), dtype=np.uint8)
    run = expand(load_recipe(SMOKE))[0]
    views = PILViews(grey, np.array([3, 1]), [None, pil_view("weak", run, 8, hflip=False)], labels=np.arange(4))
    plain, weak, label, position = views[0]
    assert plain.shape == weak.shape == (1, 8, 8) and label == 3 and position == 3 and len(views) == 2
    assert torch.allclose(plain, to_input(torch.from_numpy(grey[3])[None, None])[0])
    assert -1.0 <= float(weak.min()) and float(weak.max()) <= 1.0


def test_reference_refuses_what_it_cannot_feed():
    (run,) = expand(load_recipe(SMOKE, ["augment.strong=weak"]))
    check_reference(run)
    da = ROOT / "recipes/da/digits_m/adamatch.toml"
    with pytest.raises(ConfigError, match="ssl setting only"):
        check_reference(expand(load_recipe(da))[0])


@pytest.mark.slow
def test_bench_train_times_both_pipelines_in_turns(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "train", str(ROOT / "recipes/digits/fixmatch.toml"), "--steps", "2", "--warmup", "1"]
    assert main([*args, "--pipeline", "reference", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    result = json.loads(out.read_text())
    # progress on stderr, one line per warm-up round and one per round of timed steps, naming both pipelines
    progress = [line for line in captured.err.splitlines() if line.startswith("bench train: ")]
    assert [line.split(":")[1].strip() for line in progress] == ["warm-up step 1", "timed step 1/2", "timed step 2/2"]
    assert all("ours " in line and "reference " in line for line in progress)
    assert "bench train: " not in printed.split("\n", 1)[1]  # stdout: the header line, then figures only
    ours, ref = result["pipelines"]["ours"], result["pipelines"]["reference"]
    # a fixed --warmup 1 is shorter than the settle rule's window: said in the JSON, the header and the ratio line
    assert result["warmup_rule"] == {**result["warmup_rule"], "mode": "fixed", "fixed": 1, "window": 4}
    assert ours["warmup_steps"] == ref["warmup_steps"] == 1 and len(ref["warmup_ms"]) == 1
    assert ours["settled"] is ref["settled"] is None and result["steady"] is False
    assert "warm-up, fixed (--warmup 1)" in printed
    assert "  reference: 1 warm-up step(s), too few to judge settling (the rule needs 4) (last 1: " in printed
    ratio_line = next(line for line in printed.splitlines() if line.startswith("ratio ours / reference"))
    too_few = "1 warm-up step(s), too few to judge settling (the rule needs 4)"
    assert ratio_line.endswith(f"x, NOT steady state (ours: {too_few}; reference: {too_few})")
    # FixMatch at batch 32, mu 7: 32 labeled + 224 unlabeled x (weak, strong) views
    assert ours["images_per_step"] == ref["images_per_step"] == 32 + 2 * 7 * 32
    assert ours["steps_timed"] == ref["steps_timed"] == 2 and len(ours["step_ms"]) == 2
    assert ours["ms"]["probes"] > 0 and ref["ms"]["probes"] == 0  # CTAugment probes only in ours
    assert result["ratio"] == pytest.approx(ours["steps_per_s"] / ref["steps_per_s"])
    assert ref["speed"]["memory_format"] == "contiguous" and ref["speed"]["precision"] == "fp32"
    assert result["algorithm"] == "fixmatch" and f"{result['ratio']:.2f}x" in printed
    assert ours["peak_mb"] > 0 and ours["steps_per_s"] > 0
    assert result["host"]["cores"] == os.cpu_count() and "cpu_capability" in result["host"]
    if result["device"] == "cpu":  # the printed figures name the CPU they come from
        assert f"on cpu ({result['host']['cpu']}, {os.cpu_count()} cores" in printed


def test_bench_train_bad_inputs(capsys):
    assert main(["bench", "train", SMOKE, "--steps", "0"]) == 2
    assert "--steps must be >= 1, got 0" in capsys.readouterr().err
    assert main(["bench", "train", SMOKE, "--warmup", "-1"]) == 2
    assert "--warmup must be >= 0, got -1" in capsys.readouterr().err
    assert main(["bench", "train", SMOKE, "--warmup", "soon"]) == 2
    assert "--warmup must be auto or a number of steps, got 'soon'" in capsys.readouterr().err
    for argv, message in (  # several algorithms: refused in one line before any process starts
        (["--algorithm", "fixmatch,mixmatch"], "several --algorithm names are timed against the first with --pipel"),
        (["--algorithm", "fixmatch,mixmatch", "--pipeline", "reference"], "add --pipeline ours"),
        (["--algorithm", "fixmatch,,mixmatch", "--pipeline", "ours"], "has an empty name"),
        (["--algorithm", "fixmatch,nosuch", "--pipeline", "ours"], "unknown algorithm 'nosuch'; valid choices: "),
    ):
        assert main(["bench", "train", SMOKE, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["bench", "train", SMOKE, "--workers", "-2"]) == 2
    assert "--workers must be >= 0, got -2" in capsys.readouterr().err
    for flag, value, message in (
        ("--batch", "0", "--batch must be >= 1, got 0"),
        ("--size", "4", "--size must be between 8 and 512, got 4"),
        ("--seconds", "nan", "--seconds must be more than 0 and less than 3600, got nan"),
        ("--seconds", "inf", "--seconds must be more than 0 and less than 3600, got inf"),
        ("--seconds", "0", "--seconds must be more than 0 and less than 3600, got 0.0"),
    ):
        assert main(["bench", "augment", flag, value]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    da = str(ROOT / "recipes/da/digits_m/adamatch.toml")
    assert main(["bench", "train", da, "--pipeline", "reference"]) == 2
    err = capsys.readouterr().err
    assert "ssl setting only" in err and err.count("\n") == 1


def test_bench_device_errors_name_the_flag_typed(capsys):
    """A bench command's bad --device is reported as --device, not as the train.device it becomes."""
    for argv in (["bench", "train", SMOKE, "--device", "cuda:x"], ["bench", "augment", "--device", "cuda:x"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == "ssl-bench: error: --device: unknown device 'cuda:x'; use auto, cpu, cuda or cuda:N\n"
    assert main(["run", SMOKE, "--set", 'train.device="cuda:x"', "--results-dir", "/nonexistent/never"]) == 2
    assert "train.device: unknown device 'cuda:x'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train"], ["augment"], ["grid", SMOKE]], ids=["train", "augment", "grid"])
def test_benches_refuse_torchrun(monkeypatch, capsys, tmp_path, argv):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun --nproc_per_node 2 sets in each rank
    monkeypatch.setenv("RANK", "1")
    assert main(["bench", *argv, "--json", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"ssl-bench: error: bench {argv[0]} times one process; under torchrun (WORLD_SIZE=2) every rank would time "
        "its own copy: run it without torchrun\n"
    )
    assert not (tmp_path / "b.json").exists()
    from ssl_bench.cli.bench import one_process

    for world in ("1", ""):  # torchrun --nproc_per_node 1, and an empty variable: one process, not refused
        monkeypatch.setenv("WORLD_SIZE", world)
        one_process(argv[0])


def test_settle_rule_settles_once_the_last_steps_agree():
    rule = SettleRule()  # the last 4 within 10 % of their median, 4 to 20 steps
    times = [5.0, 3.0, 2.0, 1.02, 1.0, 0.98, 1.05, 1.01]
    states = [verdict(times[:n], rule) for n in range(1, len(times) + 1)]
    assert states == [WARMING] * 6 + [SETTLED] * 2  # 1.02, 1.0, 0.98, 1.05 are the first four that agree
    assert verdict([1.0, 1.0, 1.0, 1.0, 3.0], rule) == WARMING  # one outlier in the window: not settled yet
    # the band is relative to the median and includes its edge (binary-exact values)
    assert verdict([4.0, 4.0, 5.0, 4.0], SettleRule(band=0.25)) == SETTLED
    assert verdict([4.0, 4.0, 5.01, 4.0], SettleRule(band=0.25)) == WARMING
    assert verdict([400.0, 400.0, 500.0, 400.0], SettleRule(band=0.25)) == SETTLED  # scale-free


def test_settle_rule_respects_its_minimum_and_maximum():
    flat = [1.0] * 30
    assert [verdict(flat[:n], SettleRule()) for n in (1, 3, 4)] == [WARMING, WARMING, SETTLED]
    rule = SettleRule(window=3, min_steps=6, max_steps=9)
    assert [verdict(flat[:n], rule) for n in (3, 5, 6)] == [WARMING, WARMING, SETTLED]
    noisy = [1.0, 2.0] * 15
    assert [verdict(noisy[:n], rule) for n in (6, 8, 9, 12)] == [WARMING, WARMING, NOT_SETTLED, NOT_SETTLED]
    assert verdict(noisy[:19], SettleRule()) == WARMING and verdict(noisy[:20], SettleRule()) == NOT_SETTLED
    # a slow drift that never stays within the band is not settled at the maximum either
    drift = [2.0 * 0.9**k for k in range(20)]
    assert verdict(drift, SettleRule()) == NOT_SETTLED
    assert note("reference", noisy[:20], SettleRule()) == (
        "reference: not settled after 20 warm-up steps (last 4: 1, 2, 1, 2 s)"
    )
    assert note("ours", flat[:4], SettleRule()) == "ours: settled after 4 warm-up steps (last 4: 1, 1, 1, 1 s)"
    with pytest.raises(ValueError, match="window <= min_steps <= max_steps"):
        SettleRule(window=5, min_steps=4)


def test_a_fixed_warmup_takes_its_steps_and_is_only_judged():
    assert [verdict([1.0] * n, SettleRule(fixed=2)) for n in (0, 1, 2)] == [WARMING, WARMING, UNJUDGED]
    assert verdict([], SettleRule(fixed=0)) == UNJUDGED
    assert verdict([9.0, 1.0, 1.0, 1.0, 1.0], SettleRule(fixed=5)) == SETTLED
    assert verdict([1.0, 1.0, 1.0, 2.0, 1.0], SettleRule(fixed=5)) == NOT_SETTLED  # not extended to settle
    assert rule_of_flag("auto") == SettleRule() and rule_of_flag("7") == SettleRule(fixed=7)
    assert SettleRule(fixed=7).as_record()["mode"] == "fixed" and SettleRule().as_record()["mode"] == "auto"


class FakeChild:
    """A pipeline whose steps take the given seconds (all in the model phase); it records the order of steps."""

    def __init__(self, name: str, times: list[float], calls: list) -> None:
        self.name, self.times, self.calls = name, iter(times), calls

    def step(self, timed: bool) -> dict[str, float]:
        self.calls.append((self.name, timed))
        return {"data": 0.0, "probes": 0.0, "model": next(self.times)}


def test_race_warms_up_until_every_pipeline_settles_then_times_in_turns():
    calls, lines = [], []
    fast = FakeChild("ours", [3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0, 9.0], calls)
    slow = FakeChild("reference", [8.0, 6.0, 4.0, 3.0, 2.0, 2.0, 2.0, 2.0, 5.0, 5.0, 5.0], calls)
    ours, ref = race([fast, slow], SettleRule(), steps=2, log=lines.append)
    # ours agrees from step 5 on, the reference from step 8: both take 8 warm-up steps, in turns
    assert ours["warmup_s"] == [3.0] + [1.0] * 7 and ref["warmup_s"][-4:] == [2.0] * 4
    assert [sum(t.values()) for t in ours["times"]] == [1.0, 9.0] and len(ref["times"]) == 2
    assert [timed for _, timed in calls] == [False] * 16 + [True] * 4
    first = [name for name, _ in calls[::2]]  # who steps first in each round: the order is reversed every round
    assert first == ["ours", "reference"] * 5
    assert len(lines) == 10 and lines[0] == "warm-up step 1: ours 3.00 s (warming), reference 8.00 s (warming)"
    assert lines[7] == "warm-up step 8: ours 1.00 s (settled), reference 2.00 s (settled)"
    assert lines[9] == "timed step 2/2: ours 9.00 s, reference 5.00 s"
    assert not warm_up_done([[1.0] * 8, [8.0, 6.0, 4.0, 3.0, 2.0]], SettleRule())


@pytest.mark.slow
def test_bench_train_times_algorithms_against_a_baseline(tmp_path, capsys):
    out = tmp_path / "algos.json"
    argv = ["bench", "train", SMOKE, "--algorithm", "fixmatch,mixmatch,remixmatch", "--pipeline", "ours"]
    assert main([*argv, "--steps", "2", "--device", "cpu", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    result = json.loads(out.read_text())
    rule = result["warmup_rule"]
    assert result["mode"] == "algorithms" and result["baseline"] == "fixmatch" and rule["mode"] == "auto"
    assert [t["algorithm"] for t in result["turns"]] == ["mixmatch", "remixmatch"]
    lines = captured.out.splitlines()
    assert lines[0].startswith("bench train: algorithms against fixmatch (the baseline) on digits, small_cnn-1")
    table = lines[lines.index(next(x for x in lines if x.startswith("algorithm "))) + 1 :]
    for turn, row in zip(result["turns"], table, strict=False):
        mine, base = turn["pipelines"]["algorithm"], turn["pipelines"]["baseline"]
        assert turn["ratio"] == pytest.approx(turn["ms_per_step"] / turn["baseline_ms_per_step"])
        assert turn["ms_per_step"] == mine["ms_per_step"] and turn["baseline_ms_per_step"] == base["ms_per_step"]
        assert mine["steps_timed"] == base["steps_timed"] == 2
        cells = row.split()
        assert cells[0] == turn["algorithm"] and int(cells[1].replace(",", "")) == mine["images_per_step"]
        assert cells[2:5] == [f"{turn['ms_per_step']:,.1f}", f"{turn['baseline_ms_per_step']:,.1f}", cells[4]]
        assert cells[4].rstrip("*") == f"{turn['ratio']:.2f}x" and cells[4].endswith("*") != turn["steady"]
        for r in (mine, base):  # settled within the limits, or said not to be at the maximum
            assert r["settled"] in (True, False) and r["warmup_state"] in (SETTLED, NOT_SETTLED)
            assert (
                rule["min_steps"] <= r["warmup_steps"] <= rule["max_steps"] and len(r["warmup_ms"]) == r["warmup_steps"]
            )
            assert r["settled"] or r["warmup_steps"] == rule["max_steps"]
            assert f"{r['warmup_state']} after {r['warmup_steps']}" in row
        assert mine["warmup_steps"] == base["warmup_steps"]  # in turns: one step each per round
        assert turn["steady"] == (mine["settled"] and base["settled"])
        assert (f"* NOT steady state in the {turn['algorithm']} turn: " in captured.out) != turn["steady"]
    # other views and unlabeled ratios than the baseline's: MixMatch 32 + 2 x 32, FixMatch 32 + 2 x 7 x 32
    assert result["turns"][0]["pipelines"]["algorithm"]["images_per_step"] == 32 + 2 * 32
    assert result["turns"][0]["pipelines"]["baseline"]["images_per_step"] == 32 + 2 * 7 * 32
    progress = [x for x in captured.err.splitlines() if x.startswith("bench train: turn ")]
    assert progress[0].startswith("bench train: turn 1/2 (mixmatch): warm-up step 1: fixmatch (baseline) ")
    assert progress[-1].startswith("bench train: turn 2/2 (remixmatch): timed step 2/2: fixmatch (baseline) ")
