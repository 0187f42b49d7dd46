"""Speed switches (train/switches.py): resolved per device, validated by the plan, recorded, and with the defaults
the step computes exactly what it did before them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssl_bench.cli import main
from ssl_bench.config import TrainConfig
from ssl_bench.data import load_dataset
from ssl_bench.data.splits import get_split
from ssl_bench.identity import run_hash
from ssl_bench.plan import expand, load_recipe, split_id
from ssl_bench.train import Trainer, switches
from ssl_bench.train.switches import resolve
from tests.conftest import ROOT

SMOKE = str(ROOT / "recipes/smoke.toml")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the kernel's CPU flags")
def test_native_bf16_is_what_the_cpu_flags_say():
    assert switches.native_bf16_cpu() == bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@pytest.mark.parametrize("native", [True, False])
def test_auto_resolves_per_device(native, monkeypatch):
    monkeypatch.setattr(switches, "native_bf16_cpu", lambda: native)
    cpu = resolve(TrainConfig(precision="auto", memory_format="auto", cpu_malloc="auto"), CPU)
    assert (cpu.precision, cpu.memory_format) == ("bf16" if native else "fp32", "channels_last")
    assert cpu.cpu_malloc in ("keep", "default") and cpu.threads == torch.get_num_threads()
    gpu = resolve(TrainConfig(precision="auto", memory_format="auto", cpu_malloc="auto"), CUDA)
    assert (gpu.precision, gpu.memory_format, gpu.cpu_malloc) == ("fp32", "contiguous", "default")
    explicit = resolve(TrainConfig(precision="bf16", memory_format="contiguous", cpu_malloc="default", threads=1), CPU)
    assert (explicit.precision, explicit.memory_format, explicit.cpu_malloc, explicit.threads) == (
        "bf16",
        "contiguous",
        "default",
        1,
    )


def test_speed_keys_that_change_the_numbers_enter_the_config_hash():
    (run,) = expand(load_recipe(SMOKE))
    for key, value in (("precision", "bf16"), ("memory_format", "channels_last"), ("compile", "model")):
        (other,) = expand(load_recipe(SMOKE, [f"train.{key}={value}"]))
        assert run_hash(other) != run_hash(run), key
    for key, value in (("cpu_malloc", "default"), ("threads", 1)):  # where and how it runs, not what it computes
        (other,) = expand(load_recipe(SMOKE, [f"train.{key}={value}"]))
        assert run_hash(other) == run_hash(run), key


def tiny_trainer(*overrides: str) -> Trainer:
    (run,) = expand(load_recipe(SMOKE, ["train.steps=6", "train.eval_every=3", *overrides]))
    ds = load_dataset(run.data)
    return Trainer(run, ds, get_split(ds, split_id(run), "balanced", None), run_hash(run))


def test_channels_last_and_bf16_train_in_their_format():
    trainer = tiny_trainer("train.memory_format=channels_last", "train.precision=bf16")
    conv = next(m for m in trainer.algorithm.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.dtype == torch.float32
    ema_conv = next(m for m in trainer.ema.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert ema_conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    step = trainer.algorithm.step

    def spy(batch, progress):
        loss, metrics = step(batch, progress)
        seen.append((torch.get_autocast_dtype("cpu"), torch.is_autocast_enabled("cpu"), loss.dtype))
        return loss, metrics

    trainer.algorithm.step = spy
    result = trainer.run()
    assert seen and all(s == (torch.bfloat16, True, torch.float32) for s in seen)
    assert result.speed == {
        "precision": "bf16",
        "memory_format": "channels_last",
        "compile": "none",
        "cpu_malloc": result.speed["cpu_malloc"],
        "threads": torch.get_num_threads(),
    }
    assert 0.0 <= result.acc_final <= 1.0 and all(p.dtype == torch.float32 for p in trainer.algorithm.parameters())


def test_default_switches_reproduce_the_plain_step():
    """fp32 + contiguous + the kept allocator compute bit for bit what a run with the allocator left alone does."""
    a = tiny_trainer("train.cpu_malloc=default").run()
    b = tiny_trainer("train.cpu_malloc=keep").run()
    assert a.acc_history == b.acc_history and a.acc_raw_final == b.acc_raw_final


BAD = {
    "unknown precision": (["train.precision=fp8"], "train.precision must be one of auto, fp32, bf16, fp16, got 'fp8'"),
    "fp16 on cpu": (["train.precision=fp16", "train.device=cpu"], "train.precision = fp16 needs a CUDA device"),
    "unknown format": (["train.memory_format=nhwc"], "train.memory_format must be one of auto, contiguous"),
    "unknown compile": (["train.compile=step"], "train.compile must be one of none, model, got 'step'"),
    "negative threads": (["train.threads=-1"], "train.threads must lie in [0, 1024] (0 = torch's default), got -1"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_speed_keys(case, tmp_path, capsys):
    overrides, message = BAD[case]
    args = ["run", SMOKE, "--results-dir", str(tmp_path / "r")]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "r").exists()
