"""Every bad input refused with one line and nothing written; divergence is a failure; nothing silently dropped;
checkpoints, manifests and recipes are data; names never leave the results directory."""

import json
import os
import pickle
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_bench.cli import main
from ssl_bench.errors import ResultsDirError
from ssl_bench.results.layout import inside, record_path
from ssl_bench.results.record import check_record
from ssl_bench.results.store import load_records, scan_records
from tests.conftest import ROOT, files_in, one_line_error

SMOKE = str(ROOT / "recipes/smoke.toml")
FAST = ["--set", "train.steps=20", "--set", "train.eval_every=10"]


BAD_SETTINGS = {
    "negative lr": ("train.lr=-1", "train.lr must be > 0, got -1.0"),
    "nan lr": ("train.lr=nan", "train.lr must be a finite number, got nan"),
    "infinite lr": ("train.lr=inf", "train.lr must be a finite number, got inf"),
    "negative weight decay": ("train.weight_decay=-1", "train.weight_decay must be >= 0"),
    "momentum 1": ("train.momentum=1.0", "train.momentum must lie in [0, 1)"),
    "width 0": ("model.width=0", "model.width must be >= 1, got 0"),
    "bn momentum 0": ("model.bn_momentum=0", "model.bn_momentum must lie in (0, 1]"),
    "negative image size": ("data.image_size=-5", "data.image_size must be 0 (native size) or between 8 and 512"),
    "huge image size": ("data.image_size=100000", "got 100000"),
    "negative n_valid": ("data.n_valid=-1", "data.n_valid must be >= 0"),
    "zero budget": ("grid.n_labels=[0]", "label budgets must be >= 1"),
    "seed twice": ("grid.seeds=[1,2,1]", "grid.seeds lists 1 more than once"),
    "budget twice": ("grid.n_labels=[40,40]", "grid.n_labels lists 40 more than once"),
    "budget not divisible": ("grid.n_labels=[45]", "45 labels do not divide into 10 classes"),
    "chance warm-up 1.5": (
        "train.chance_warmup=1.5",
        "train.chance_warmup must lie in [0, 1) (a fraction of train.steps), got 1.5",
    ),
    "chance evals 0": ("train.chance_evals=0", "train.chance_evals must be >= 1, got 0"),
    # [augment] magnitudes, refused even where the recipe's policies do not use them (smoke: weak only)
    "translate 2": (
        "augment.translate=2",
        "augment.translate must lie in [0, 1) (a fraction of the image side), got 2.0",
    ),
    "negative cutout": ("augment.cutout=-1", "augment.cutout must lie in [0, 1], got -1.0"),
    # the CTAugment variants too: unchecked without CTAugment, they made a new config hash of the same run
    "cta sampling": ('augment.cta_sampling="bogus"', "cta_sampling must be fixmatch or remixmatch, got 'bogus'"),
    "cta translate": ('augment.cta_translate="bogus"', "augment.cta_translate must be pixels or fraction, got 'bogus'"),
    "cta rescale": ('augment.cta_rescale="px"', "augment.cta_rescale must be pixels or fraction, got 'px'"),
    "cta decay 1": ("augment.cta_decay=1", "augment.cta_decay must lie in (0, 1), got 1.0"),
    "ra ops 0": ("augment.ra_ops=0", "augment.ra_ops must be >= 1, got 0"),
    "bn eps 0": ("model.bn_eps=0", "model.bn_eps must be > 0, got 0.0"),
    # -1 once wrote a checkpoint after every step (step % -1 == 0); aug_k 0 made the .aug acquisitions un-augmented
    "checkpoint every -1": (
        "train.checkpoint_every=-1",
        "train.checkpoint_every must be >= 0 (0 = at every evaluation), got -1",
    ),
    "aug_k 0": ("active.aug_k=0", "active.aug_k must be >= 1, got 0"),
    "steps of an active-learning run": (  # the smoke recipe's train.steps = 60 was replaced by the schedule's
        'active.acquisitions=["random"]',
        "train.steps is derived from the active-learning schedule",
    ),
    "acquisition twice": (  # the second was reported as 'already recorded ... skipped', exit 0
        'active.acquisitions=["random","random"]',
        "active.acquisitions lists 'random' more than once",
    ),
    # past float32's range torch's in-place optimizer update raised a RuntimeError; numpy refused seeds >= 2^32;
    # 5,000 threads brought the machine to a halt and 100,000 crashed the process
    "lr beyond float32": ("train.lr=1e39", "train.lr must be within float32's range (±3.4e38), got 1e+39"),
    "weight decay beyond float32": ("train.weight_decay=1e300", "train.weight_decay must be within float32's range"),
    "seed 2^32": ("grid.seeds=[4294967296]", "grid.seeds: seeds must lie in [0, 4294967295] (numpy's seed range)"),
    "5000 threads": ("train.threads=5000", "train.threads must lie in [0, 1024] (0 = torch's default), got 5000"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_bad_settings_are_refused_before_anything_is_written(case, tmp_path, capsys):
    setting, message = BAD_SETTINGS[case]
    assert main(["run", SMOKE, "--results-dir", str(tmp_path / "r"), "--set", setting]) == 2
    one_line_error(capsys, message)
    assert files_in(tmp_path / "r") == []


# hyper-parameters outside the interval the algorithm is defined on (the Range beside each field): each of these once
# trained (a threshold no prediction reaches, NaN mixup weights) or ended in a traceback (T = 0, ReMixMatch K = 0)
BAD_HYPER = {
    "fixmatch threshold 1.5": ("fixmatch", "algorithm.threshold=1.5", "threshold of fixmatch must lie in [0, 1]"),
    "fixmatch negative wu": ("fixmatch", "algorithm.wu=-1", "algorithm.wu of fixmatch must be >= 0, got -1.0"),
    "mixmatch T 0": ("mixmatch", "algorithm.T=0", "algorithm.T of mixmatch must be > 0, got 0.0"),
    "mixmatch alpha -1": ("mixmatch", "algorithm.alpha=-1", "algorithm.alpha of mixmatch must be > 0, got -1.0"),
    "remixmatch K 0": ("remixmatch", "algorithm.K=0", "algorithm.K of remixmatch must be >= 1, got 0"),
    "remixmatch decay 1": ("remixmatch", "algorithm.p_data_decay=1", "must lie in [0, 1), got 1.0"),
    "adamatch tau 2": ("adamatch", "algorithm.tau=2", "algorithm.tau of adamatch must lie in [0, 1], got 2.0"),
    "adamatch dbuf 0": ("adamatch", "algorithm.dbuf=0", "algorithm.dbuf of adamatch must be >= 1, got 0"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_HYPER))
def test_bad_hyper_parameters_are_refused_before_anything_is_written(case, tmp_path, capsys):
    algorithm, setting, message = BAD_HYPER[case]
    recipe = str(ROOT / f"recipes/digits/{algorithm}.toml")
    assert main(["run", recipe, "--results-dir", str(tmp_path / "r"), "--set", setting]) == 2
    one_line_error(capsys, message)
    assert files_in(tmp_path / "r") == []


def test_ranges_are_inclusive_or_exclusive_as_written():
    from dataclasses import dataclass
    from typing import Annotated

    from ssl_bench.algorithms.base import AlgorithmConfig
    from ssl_bench.config_checks import Range, check_ranges
    from ssl_bench.errors import ConfigError

    @dataclass(frozen=True)
    class Cfg(AlgorithmConfig):
        name: str = "x"
        a: Annotated[float, Range("(0, 1]")] = 0.5

    for ok in (1.0, 1e-9, 0.5):
        check_ranges(Cfg(a=ok), "algorithm", "x")
    for bad in (0.0, 1.0 + 1e-9, -3.0):
        with pytest.raises(ConfigError, match=r"algorithm.a of x must lie in \(0, 1\]"):
            check_ranges(Cfg(a=bad), "algorithm", "x")

    @dataclass(frozen=True)
    class OnText(AlgorithmConfig):
        name: Annotated[str, Range("[0, 1]")] = "x"

    with pytest.raises(TypeError, match="holds no number"):  # a range on a str field is the plugin author's bug
        check_ranges(OnText(), "algorithm", "x")
    with pytest.raises(TypeError, match="not an interval"):  # as is an interval that does not parse
        Range("0 to 1")

    @dataclass(frozen=True)
    class OldStyle(AlgorithmConfig):
        name: str = "x"
        limits = {"a": "[0, 1]"}

    with pytest.raises(TypeError, match="limits is not read"):  # an old plug-in's table is never silently ignored
        check_ranges(OldStyle(), "algorithm", "x")


def test_every_section_declares_ranges_its_defaults_meet():
    import dataclasses

    from ssl_bench.config import ActiveConfig, AugmentConfig, DataConfig, ModelConfig, TrainConfig
    from ssl_bench.config_checks import check_ranges, field_range
    from ssl_bench.errors import ConfigError

    for cls, section in ((DataConfig, "data"), (ModelConfig, "model"), (AugmentConfig, "augment"),
                         (TrainConfig, "train"), (ActiveConfig, "active")):  # fmt: skip
        ranges = {f.name: field_range(cls, f.name) for f in dataclasses.fields(cls)}
        ranges = {k: r for k, r in ranges.items() if r is not None}
        assert ranges, f"{cls.__name__} declares no ranges"
        check_ranges(cls(), section)  # a TypeError here is a range on no numeric field
        # each range bites: a value far outside, on the open or closed side that the interval names, is refused
        for key, limit in ranges.items():
            interval = str(limit)
            low = float(interval.split(",")[0].strip("[( "))
            bad = low if interval.startswith("(") else low - 1
            value = int(bad) if isinstance(getattr(cls(), key), int) else bad
            with pytest.raises(ConfigError, match=rf"^{section}\.{key} must "):
                check_ranges(cls(**{key: value}), section)


def overcommits_without_limit() -> bool:
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1"
    except OSError:
        return True  # not Linux: unknown, so do not try


@pytest.mark.skipif(overcommits_without_limit(), reason="the allocator may hand out the memory and the OOM killer act")
def test_a_model_too_large_for_memory_is_one_line(tmp_path, capsys):
    # its weights alone are terabytes: refused from their shapes, before anything is allocated
    assert main(["run", SMOKE, "--results-dir", str(tmp_path / "r"), "--set", "model.width=100000"]) == 2
    err = one_line_error(capsys, "model small_cnn at width 100000 does not fit in memory (")
    assert "GiB for its weights, gradients, EMA copy and optimizer state" in err and "GiB free on cpu" in err
    assert files_in(tmp_path / "r") == []


def test_an_allocation_failure_while_building_the_model_is_one_line(tmp_path, capsys, monkeypatch):
    # a model the meta-device count cannot size is checked by building it: the allocator's refusal names the size
    def no_meta_count(*args):
        raise NotImplementedError("no meta kernel")

    def allocator_refuses(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 3221225472 bytes."
        )

    monkeypatch.setattr("ssl_bench.train.checks.parameter_bytes", no_meta_count)
    monkeypatch.setattr("ssl_bench.train.checks.build_run", allocator_refuses)
    assert main(["run", SMOKE, "--results-dir", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "model small_cnn at width 1 does not fit in memory (3.0 GiB in one tensor): use a smaller")
    assert files_in(tmp_path / "r") == []
    monkeypatch.setattr(
        "ssl_bench.train.checks.build_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape bug"))
    )
    with pytest.raises(RuntimeError, match="shape bug"):  # any other failure is not called a memory problem
        main(["run", SMOKE, "--results-dir", str(tmp_path / "r")])


class FakeData:
    num_classes, channels, image_size = 10, 3, 32


# WRN-28-2 on 32x32x3 images with 10 classes has 1,467,610 parameters (the count the papers' "1.5M" rounds)
WRN28_2_PARAMS = 1_467_610


@pytest.mark.parametrize("optimizer,copies", [("sgd", 4), ("adam", 5)])
def test_model_memory_needs_four_fp32_copies_of_the_weights_five_with_adam(monkeypatch, optimizer, copies):
    from ssl_bench.config import ModelConfig, TrainConfig
    from ssl_bench.errors import ConfigError
    from ssl_bench.train.checks import check_model_memory

    run = SimpleNamespace(
        model=ModelConfig(name="wrn28", width=2), train=TrainConfig(optimizer=optimizer, device="cpu")
    )
    need = WRN28_2_PARAMS * 4 * copies
    monkeypatch.setattr("ssl_bench.train.checks.available_memory", lambda device: need)
    check_model_memory(run, FakeData())  # exactly enough
    monkeypatch.setattr("ssl_bench.train.checks.available_memory", lambda device: need - 1)
    with pytest.raises(ConfigError, match=r"model wrn28 at width 2 does not fit in memory \(0\.0 GiB"):
        check_model_memory(run, FakeData())
    monkeypatch.setattr("ssl_bench.train.checks.available_memory", lambda device: None)  # unknown: not refused
    check_model_memory(run, FakeData())


def test_model_memory_counts_every_run_that_trains_at_once(monkeypatch):
    from ssl_bench.config import ModelConfig, TrainConfig
    from ssl_bench.errors import ConfigError
    from ssl_bench.train.checks import check_model_memory

    run = SimpleNamespace(model=ModelConfig(name="wrn28", width=2), train=TrainConfig(device="cpu"))
    need = WRN28_2_PARAMS * 4 * 4
    monkeypatch.setattr("ssl_bench.train.checks.available_memory", lambda device: 3 * need)
    check_model_memory(run, FakeData(), at_once=3)  # exactly enough for three
    with pytest.raises(ConfigError) as refused:
        check_model_memory(run, FakeData(), at_once=4)
    assert "state for each of 4 runs at once; 0.1 GiB free on cpu): use fewer --workers, a smaller" in str(
        refused.value
    )


def test_workers_that_would_not_fit_side_by_side_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    from ssl_bench.config import ModelConfig
    from ssl_bench.errors import ConfigError
    from ssl_bench.models import parameter_bytes

    need = parameter_bytes(ModelConfig(name="small_cnn", width=1), 10, 1, 8) * 4  # the smoke recipe's model
    monkeypatch.setattr("ssl_bench.train.checks.available_memory", lambda device: 3 * need)
    four = ["--set", "grid.seeds=[1,2,3,4]", "--workers", "4"]
    assert main(["run", SMOKE, "--results-dir", str(tmp_path / "r"), *four]) == 2
    one_line_error(capsys, "model small_cnn at width 1 does not fit in memory (0.0 GiB for its weights")
    assert files_in(tmp_path / "r") == []
    from ssl_bench.plan import load_recipe, plan

    three = load_recipe(SMOKE, ["grid.seeds=[1,2,3]"])  # three runs: at most three train at once
    assert len(plan(three, tmp_path / "r", at_once=4)) == 3
    with pytest.raises(ConfigError, match="for each of 4 runs at once"):
        plan(load_recipe(SMOKE, ["grid.seeds=[1,2,3,4]"]), tmp_path / "r", at_once=4)
    assert files_in(tmp_path / "r") == []


def test_a_run_refused_for_memory_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ssl_bench.train.checks.available_memory", lambda device: 1000)
    assert main(["run", SMOKE, "--results-dir", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "model small_cnn at width 1 does not fit in memory (0.0 GiB for its weights")
    assert files_in(tmp_path / "r") == []


def test_more_wrn_stages_than_the_image_can_halve_is_refused(tmp_path, capsys):
    # 8 px halves to 4, 2, 1: four stages at most; nine used to allocate until the OOM killer ended the run
    assert (
        main(
            ["run", SMOKE, "--results-dir", str(tmp_path / "r"), "--set", "model.name=wrn28", "--set", "model.scales=9"]
        )
        == 2
    )
    one_line_error(capsys, "model.scales = 9 halves the 8-px images 8 times: at most 4 stages at 8 px")
    assert files_in(tmp_path / "r") == []
    from ssl_bench.config import ModelConfig
    from ssl_bench.models.wrn import wrn_scales

    assert wrn_scales(ModelConfig(name="wrn28", scales=4), 8) == 4
    assert wrn_scales(ModelConfig(name="wrn28", scales=6), 32) == 6
    assert wrn_scales(ModelConfig(name="wrn28", scales=6), 28) == 6  # 28, 14, 7, 4, 2, 1
    with pytest.raises(Exception, match="at most 6 stages at 28 px"):
        wrn_scales(ModelConfig(name="wrn28", scales=7), 28)
    with pytest.raises(Exception, match="at most 6 stages at 32 px"):
        wrn_scales(ModelConfig(name="wrn28", scales=7), 32)


def test_proportional_split_accepts_any_budget(tmp_path):
    from ssl_bench.plan import load_recipe, plan

    recipe = load_recipe(SMOKE, ["grid.n_labels=[45]", "data.class_balance='proportional'"])
    assert len(plan(recipe, tmp_path)) == 1


def test_results_dir_that_is_a_file_or_below_one(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["run", SMOKE, "--results-dir", str(afile)]) == 2
    one_line_error(capsys, "is a file, not a directory")
    assert main(["run", SMOKE, "--results-dir", str(afile / "below")]) == 2
    one_line_error(capsys, "cannot be created")
    assert afile.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_results_dir(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["run", SMOKE, "--results-dir", str(ro)]) == 2
        one_line_error(capsys, "is not writable")
    finally:
        ro.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no procfs")
def test_a_results_dir_that_no_folder_can_be_made_in_is_refused_before_training(capsys):
    """/proc is a folder that root may "write" by its permission bits, yet no folder can be made in it."""
    assert main(["run", SMOKE, "--results-dir", "/proc/ssl-bench-results"]) == 2
    one_line_error(capsys, "results directory /proc/ssl-bench-results ")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("[train]\nsteps = 10\n", "does not set [algorithm] name or [data] dataset"),
        ('[algorithm]\nname = "supervised"\n', "does not set [data] dataset"),
    ],
)
def test_empty_or_partial_recipe_files(tmp_path, capsys, text, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--results-dir", str(tmp_path / "r")]) == 2
    one_line_error(capsys, message)
    assert files_in(tmp_path / "r") == []


def test_a_one_class_folder_dataset_is_refused(tmp_path, capsys):
    cls = tmp_path / "data" / "only"
    cls.mkdir(parents=True)
    for i in range(10):
        Image.fromarray(np.full((8, 8), 25 * i, np.uint8)).save(cls / f"{i}.png")
    args = ["--set", "data.dataset='folder'", "--set", f"data.root='{tmp_path / 'data'}'", "--set", "data.image_size=8"]
    assert main(["run", SMOKE, "--results-dir", str(tmp_path / "r"), *args, "--set", "grid.n_labels=[2]"]) == 2
    one_line_error(capsys, "has 1 class(es); a classifier needs at least 2")
    assert files_in(tmp_path / "r") == []


# ------------------------------------------------------------------------------------------------------------
# out of memory while training


def fail_at(monkeypatch, step, exc):
    from ssl_bench.train.trainer import Trainer

    real = Trainer.train_step

    def train_step(self):
        if self.step + 1 == step:
            raise exc
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: you tried"),
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 184320000000 bytes."),
        MemoryError(),
    ],
)
def test_running_out_of_memory_mid_run_is_one_line_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch, exc):
    results = tmp_path / "r"
    fail_at(monkeypatch, 25, exc)  # after the checkpoint of step 20
    assert main(["run", SMOKE, "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ssl-bench: error: 1 of 1 run(s) failed, no record written for them: "), err
    assert "ran out of cpu memory at step 25 (" in err and "use a smaller train.batch_size" in err
    assert "Traceback" not in err
    assert [p.name for p in files_in(results / "runs")] == [] and list(results.rglob("*.pt")) != []
    monkeypatch.undo()  # the same command again resumes from step 20 and records the run
    assert main(["run", SMOKE, "--results-dir", str(results)]) == 0
    assert len(files_in(results / "runs")) == 1


def test_another_runtime_error_is_not_taken_for_memory(tmp_path, monkeypatch):
    fail_at(monkeypatch, 3, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        main(["run", SMOKE, "--results-dir", str(tmp_path / "r")])


# ------------------------------------------------------------------------------------------------------------
# divergence


def test_non_finite_loss_stops_the_run_without_a_record(tmp_path, capsys):
    results = tmp_path / "r"
    argv = ["run", SMOKE, "--results-dir", str(results), "--set", "train.lr=1e6", "--set", "train.steps=200"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ssl-bench: error: 1 of 1 run(s) diverged" in err and "the loss became non-finite at step" in err
    assert "Traceback" not in err
    # caught at the first evaluation (step 20), before the first checkpoint and the split manifest were written
    assert files_in(results) == []


def test_chance_level_accuracy_stops_the_run_and_keeps_its_checkpoint(tmp_path, capsys):
    results = tmp_path / "r"
    # a margin of 0.95 makes every accuracy "chance": the check must fire after warm-up + chance_evals evaluations
    args = ["--set", "train.steps=100", "--set", "train.eval_every=10", "--set", "train.chance_margin=0.95"]
    assert main(["run", SMOKE, "--results-dir", str(results), *args, "--set", "train.chance_evals=3"]) == 2
    err = capsys.readouterr().err
    # warm-up 25 steps: the evaluations at 30, 40 and 50 are the first three past it
    assert "test accuracy at chance level (0.100 + 0.95) for the last 3 evaluations (steps 30-50)" in err
    assert "last finite loss" in err and "last test accuracy" in err
    assert load_records(results) == [] and len(files_in(results / ".checkpoints")) == 1


def test_divergence_check_can_be_turned_off(tmp_path):
    results = tmp_path / "r"
    args = ["--set", "train.chance_margin=0.95", "--set", "train.divergence=false", *FAST]
    assert main(["run", SMOKE, "--results-dir", str(results), *args]) == 0
    (rec,) = load_records(results)
    assert rec["config"]["train"]["divergence"] is False


def test_divergence_settings_leave_the_config_hash_alone(tmp_path):
    from ssl_bench.plan import load_recipe, plan

    base = plan(load_recipe(SMOKE), tmp_path)[0].config_hash
    other = load_recipe(SMOKE, ["train.divergence=false", "train.chance_evals=9", "train.chance_margin=0.1"])
    assert plan(other, tmp_path)[0].config_hash == base


# ------------------------------------------------------------------------------------------------------------
# records: never silently dropped or overwritten


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    results = tmp_path_factory.mktemp("trained") / "r"
    assert main(["run", SMOKE, "--results-dir", str(results), *FAST, "--quiet"]) == 0
    return results


@pytest.fixture
def recorded(trained_once, tmp_path):
    """A results directory holding one finished smoke run (a copy per test)."""
    results = tmp_path / "r"
    shutil.copytree(trained_once, results)
    (path,) = files_in(results / "runs")
    return results, path


def test_a_truncated_record_is_reported_by_leaderboard(recorded, capsys):
    results, path = recorded
    path.write_text(path.read_text()[:40])
    capsys.readouterr()
    assert main(["leaderboard", "--results-dir", str(results)]) == 0
    captured = capsys.readouterr()
    assert f"ssl-bench: warning: {path}: unreadable record (not valid JSON" in captured.err
    assert "1 unreadable file(s) under runs/ left out" in captured.out and path.name in captured.out
    assert path.name in (results / "index.html").read_text()


def test_a_record_with_a_number_too_long_to_read_is_unreadable_not_a_crash(tmp_path):
    # json.loads raises a plain ValueError (no line number) for an integer of more digits than int() reads
    path = tmp_path / "runs" / "x.json"
    path.parent.mkdir()
    path.write_text('{"seed": ' + "1" * 5000 + "}")
    scan = scan_records(tmp_path)
    assert scan.records == []
    ((where, reason),) = scan.unreadable
    assert where == path and reason.startswith("not valid JSON (Exceeds the limit")


def test_a_truncated_record_is_moved_aside_before_the_run_trains_again(recorded, capsys):
    results, path = recorded
    broken = path.read_text()[:40]
    path.write_text(broken)
    capsys.readouterr()
    assert main(["run", SMOKE, "--results-dir", str(results), *FAST, "--quiet"]) == 0
    err = capsys.readouterr().err
    (aside,) = path.parent.glob(f"{path.name}.unreadable-*")
    assert aside.read_text() == broken  # kept, byte for byte
    assert f"record {path} is unreadable" in err and f"moved aside to {aside.name}" in err
    assert json.loads(path.read_text())["acc_median"] >= 0  # retrained and recorded afresh
    assert [p.name for p in files_in(results / "runs") if p.suffix == ".json"] == [path.name]


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda r: r.pop("acc_median"), "missing key(s) acc_median"),
        (lambda r: r.update(acc_median=1.5), "acc_median 1.5 is not an accuracy in [0, 1]"),
        (lambda r: r.update(record_version=99), "record_version 99 is not one this ssl_bench reads"),
        (lambda r: r.update(seed="1"), "seed '1' is not an integer"),
        (lambda r: r.update(acc_history=[[1, 0.5, 3]]), "acc_history is not a list of [step, accuracy] pairs"),
        # each of these crashed leaderboard, compare or exchange-rate with a traceback, or showed a bogus column
        (lambda r: r.update(config="x"), "config is not a table of sections"),
        (lambda r: r["config"].update(data="x"), "config is not a table of sections"),
        (lambda r: r.update(recipe="x"), "recipe 'x' is not a table"),
        (lambda r: r.update(wall_s="x"), "wall_s 'x' is not a number of seconds"),
        (lambda r: r.update(median_k="x"), "median_k 'x' is not an integer >= 1"),
        (lambda r: r.update(augmentation=[1]), "augmentation [1] is not a string"),
        (lambda r: r.update(n_unlabeled="lots"), "n_unlabeled 'lots' is not an integer"),
        (lambda r: r.update(setting="bogus"), "setting 'bogus' is none of ssl, uda, ssda"),
        (lambda r: r.update(n_labels=-40), "n_labels -40 is not an integer >= 0"),
        (lambda r: r.update(dataset="../../evil"), "dataset '../../evil' is not a name"),
    ],
)
def test_records_are_validated_against_the_schema(recorded, change, reason):
    results, path = recorded
    rec = json.loads(path.read_text())
    assert rec["record_version"] == 1 and check_record(rec) is None
    change(rec)
    path.write_text(json.dumps(rec))
    scan = scan_records(results)
    assert scan.records == [] and len(scan.unreadable) == 1
    assert scan.unreadable[0][0] == path and scan.unreadable[0][1].startswith(reason)


@pytest.mark.parametrize(
    "argv, purpose",
    [(["compare", "supervised", "supervised"], "the comparison"), (["exchange-rate"], "the exchange rates")],
)
def test_compare_and_exchange_rate_name_the_records_they_leave_out(recorded, capsys, argv, purpose):
    """They dropped unreadable records in silence (compare then reported fewer shared splits)."""
    results, path = recorded
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "config": "x"}))
    capsys.readouterr()
    main([*argv, "--results-dir", str(results)])  # exit 2 here: no runs left to compare or rate
    err = capsys.readouterr().err
    why = "config is not a table of sections"
    assert f"ssl-bench: warning: {path}: unreadable record ({why}), left out of {purpose}" in err
    assert "Traceback" not in err


def test_a_record_without_version_is_version_1(recorded):
    results, path = recorded
    rec = json.loads(path.read_text())
    del rec["record_version"]
    assert check_record(rec) is None


def test_a_renamed_recipe_finds_its_runs_recorded(recorded, tmp_path, capsys):
    """Name and description label a recipe's runs; they are not part of what a run computes (the config hash)."""
    results, path = recorded
    renamed = tmp_path / "renamed.toml"
    text = open(SMOKE).read().replace('name = "smoke"', 'name = "smoke-2"')
    renamed.write_text(text.replace("description = ", 'description = "new words" #'))
    capsys.readouterr()
    assert main(["run", str(renamed), "--results-dir", str(results), *FAST, "--quiet"]) == 0
    assert "already recorded by recipe 'smoke'" in capsys.readouterr().err
    assert json.loads(path.read_text())["recipe"]["name"] == "smoke"


def test_a_corrupt_checkpoint_is_not_announced_as_resumed(tmp_path, capsys):
    from ssl_bench.plan import load_recipe
    from ssl_bench.runner import run_recipe

    results = tmp_path / "r"
    run_recipe(load_recipe(SMOKE, ["train.steps=20", "train.eval_every=10"]), results, log=lambda s: None, stop_at=10)
    (ckpt,) = files_in(results / ".checkpoints")
    ckpt.write_bytes(b"garbage")
    assert main(["run", SMOKE, "--results-dir", str(results), *FAST]) == 2
    err = capsys.readouterr().err
    assert "resum" not in err and "is corrupted or unreadable" in err


# ------------------------------------------------------------------------------------------------------------
# security: data is never code, names never leave the results directory


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARK}",))


MARK = "/nonexistent"


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    global MARK
    from ssl_bench.plan import load_recipe
    from ssl_bench.runner import run_recipe

    results = tmp_path / "r"
    run_recipe(load_recipe(SMOKE, ["train.steps=20", "train.eval_every=10"]), results, log=lambda s: None, stop_at=10)
    (ckpt,) = files_in(results / ".checkpoints")
    MARK = str(tmp_path / "pwned")
    state = torch.load(ckpt, weights_only=True)
    state["extra"] = Payload()
    torch.save(state, ckpt)  # torch's own protocol: a payload needs no newer one, and torch.load does not warn
    assert main(["run", SMOKE, "--results-dir", str(results), *FAST]) == 2
    assert "is corrupted or unreadable" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()  # weights_only=True never unpickled the payload


def test_recipe_values_are_data_never_evaluated(tmp_path, capsys):
    mark = tmp_path / "pwned"
    code = f"__import__('os').system('touch {mark}')"
    assert main(["run", SMOKE, "--results-dir", str(tmp_path / "r"), "--set", f"train.steps={code}"]) == 2
    assert "train.steps" in capsys.readouterr().err and not mark.exists()
    recipe = tmp_path / "r.toml"
    recipe.write_text(open(SMOKE).read().replace('name = "smoke"', f'name = "{code}"'))
    from ssl_bench.plan import load_recipe

    assert load_recipe(recipe).name == code and not mark.exists()


def test_a_manifest_is_json_and_never_code(recorded, tmp_path, capsys):
    results, _ = recorded
    (manifest,) = [p for p in files_in(results / "splits") if p.suffix == ".json"]
    json.loads(manifest.read_text())  # plain JSON
    manifest.write_bytes(pickle.dumps(Payload()))
    (results / "runs").rename(tmp_path / "old-runs")
    assert main(["run", SMOKE, "--results-dir", str(results), *FAST, "--quiet"]) == 2
    assert "manifest" in capsys.readouterr().err.lower()


@pytest.mark.parametrize("field, value", [("dataset", "../../outside"), ("algorithm", "/abs"), ("split", "../../x")])
def test_names_from_records_cannot_leave_the_results_dir(tmp_path, field, value):
    rec = {"dataset": "digits", "algorithm": "fixmatch", "split": "digits.1@40-0", "config_hash": "a" * 64}
    rec[field] = value
    with pytest.raises(ResultsDirError):
        record_path(tmp_path, rec)
    with pytest.raises(ResultsDirError, match="unsafe name"):
        inside(tmp_path, "runs", "a/../../b")
    assert inside(tmp_path, "runs", "digits", "x.json") == tmp_path / "runs" / "digits" / "x.json"


def test_an_unsafe_dataset_name_in_a_recipe_is_refused(tmp_path, capsys):
    assert main(["run", SMOKE, "--results-dir", str(tmp_path / "r"), "--set", "data.dataset='../../etc'"]) == 2
    one_line_error(capsys, "")
    assert files_in(tmp_path / "r") == []


@pytest.mark.parametrize(
    "command", [["bench", "train"], ["bench", "augment"], ["leaderboard", "--csv"], ["leaderboard", "--json"]]
)
@pytest.mark.parametrize("where", ["below_a_file", "a_folder", "proc"])
def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, command, where):
    """--json / --csv are checked first: not after minutes of timing, nor after a new leaderboard is in place."""
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no procfs")
    afile = tmp_path / "afile"
    afile.write_text("x")
    dest = {"below_a_file": afile / "out.json", "a_folder": tmp_path, "proc": Path("/proc/out.json")}[where]
    results = tmp_path / "results"
    if command[0] == "leaderboard":
        assert main(["run", SMOKE, "--results-dir", str(results), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    capsys.readouterr()
    option = "--csv" if command[-1] == "--csv" else "--json"
    argv = ["leaderboard", "--results-dir", str(results)] if command[0] == "leaderboard" else command
    started = time.monotonic()
    assert main([*argv, option, str(dest)]) == 2
    err = one_line_error(capsys, f"{option} {dest} ")
    assert ("is a folder, not a file" in err) == (where == "a_folder")
    assert time.monotonic() - started < 20  # the paper-scale bench train step alone takes seconds
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before


def test_available_memory_is_the_kernels_figure_on_a_cpu_and_unknown_on_a_gpu():
    from ssl_bench.devices import available_memory

    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    total = int(meminfo["MemTotal"].split()[0]) * 1024
    free = available_memory(torch.device("cpu"))
    assert 0 < free <= total
    assert available_memory(torch.device("cuda")) is None  # asking would create a CUDA context while planning


def test_under_torchrun_a_rank_out_of_memory_ends_its_process_instead_of_moving_on(monkeypatch):
    """One rank alone runs out: the others wait in a collective of that run, so this rank must not go on to the
    next run's collectives; the error ends the process and torchrun stops the rest."""
    from ssl_bench import runner
    from ssl_bench.errors import RunMemoryError
    from ssl_bench.train.distributed import Dist

    calls = []

    def run_one(p, *args, **kwargs):
        calls.append(p)
        raise RunMemoryError("ran out of cuda memory at step 7")

    monkeypatch.setattr(runner, "run_one", run_one)
    planned = [SimpleNamespace(tag="a"), SimpleNamespace(tag="b")]
    with pytest.raises(RunMemoryError, match="^ran out of cuda memory at step 7$"):
        runner.run_planned(planned, Path("unused"), log=lambda s: None, dist=Dist(rank=1, world=2))
    assert len(calls) == 1
    with pytest.raises(RunMemoryError, match="^2 of 2 run\\(s\\) failed"):  # one process: the next run goes on
        runner.run_planned(planned, Path("unused"), log=lambda s: None)
    assert len(calls) == 3


@pytest.mark.parametrize(
    "exc, whole, expected",
    [
        (RuntimeError("CUDA out of memory.\nTried to allocate 2.00 GiB"), False, "RuntimeError: CUDA out of memory."),
        (ValueError("name 'x' taken:\n  by my_pkg.a\n"), True, "ValueError: name 'x' taken: by my_pkg.a"),
        (KeyError(), False, "KeyError"),
        (OSError("disk full:"), False, "OSError: disk full:"),  # the message's own colon stays
    ],
)
def test_one_line_keeps_the_type_and_the_first_or_every_line(exc, whole, expected):
    from ssl_bench.errors import one_line

    assert one_line(exc, whole=whole) == expected
