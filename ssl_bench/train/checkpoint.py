"""The checkpoint format: what a trainer's checkpoint holds, how it is written, read back and verified.

A checkpoint resumes a run exactly: besides the weights it holds every random state, the index streams, the
CTAugment weights and the evaluation history. It is written in one atomic step, so a kill leaves the previous one
whole, and it is refused with one line when it belongs to another config, split or world size. The layout is
format 1; a change to it must raise ``FORMAT`` so that older files are refused rather than misread.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol

import torch

from ssl_bench.algorithms import Algorithm
from ssl_bench.atomic_write import atomic_write_bytes
from ssl_bench.data.splits import Split
from ssl_bench.errors import CheckpointError
from ssl_bench.train.distributed import Dist
from ssl_bench.train.feed import Feed
from ssl_bench.train.optim import EMA

FORMAT = 1


class Resumable(Protocol):
    """The state of a trainer that a checkpoint captures and restores (``Trainer`` provides it)."""

    config_hash: str
    split: Split
    dist: Dist
    device: torch.device
    algorithm: Algorithm
    ema: EMA
    optimizer: Any  # torch.optim.Optimizer
    generator: torch.Generator  # the views' and probes' random stream
    feedback: dict[str, Any]  # CTAugment policies by name
    scaler: torch.amp.GradScaler | None  # fp16 only
    feed: Feed
    step: int
    history: list[tuple[int, float]]
    wall_s: float


def capture(t: Resumable) -> dict[str, Any]:
    """Everything that an exact resume of ``t`` needs, as the tensors and plain values of format ``FORMAT``."""
    rng = {"torch": torch.get_rng_state(), "views": t.generator.get_state()}
    if t.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(t.device)
    return {
        "format": FORMAT,
        "config_hash": t.config_hash,
        "split_hash": t.split.hash,
        "world_size": t.dist.world,
        "step": t.step,
        "algorithm": t.algorithm.state_dict(),
        "ema": t.ema.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "rng": rng,
        "augment": {n: f.state_dict() for n, f in t.feedback.items()},
        "scaler": t.scaler.state_dict() if t.scaler is not None else None,
        **t.feed.state_dict(),  # labeled_pool, streams
        "history": [list(h) for h in t.history],
        "wall_s": t.wall_s,
    }


def save(t: Resumable, path: Path) -> None:
    """Write the checkpoint of ``t`` to ``path`` atomically (a kill mid-write keeps the previous file)."""
    buf = io.BytesIO()
    torch.save(capture(t), buf)
    atomic_write_bytes(path, buf.getvalue())


def read(path: Path, config_hash: str, split_hash: str, world: int) -> dict[str, Any]:
    """The checkpoint at ``path``, verified to be one of this format, config, split and world size."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupted or unreadable ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an ssl_bench checkpoint (format {FORMAT})")
    if state.get("config_hash") != config_hash:
        raise CheckpointError(f"checkpoint {path} belongs to another config (config hash mismatch)")
    if state.get("split_hash") != split_hash:
        raise CheckpointError(f"checkpoint {path} was trained on another split (split hash mismatch)")
    saved_world = int(state.get("world_size", 1))
    if saved_world != world:
        raise CheckpointError(
            f"checkpoint {path} was trained on {saved_world} process(es), this run has {world}: resume it "
            f"with the same world size (torchrun --nproc_per_node ...), or delete the checkpoint to start over"
        )
    return state


def load(t: Resumable, path: Path) -> None:
    """Restore ``t`` from the checkpoint at ``path`` (read and verified first)."""
    state = read(path, t.config_hash, t.split.hash, t.dist.world)
    try:
        t.algorithm.load_state_dict(state["algorithm"])
        t.ema.load_state_dict(state["ema"])
        t.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        t.generator.set_state(state["rng"]["views"])
        if "cuda" in state["rng"] and t.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], t.device)
        for n, f in t.feedback.items():
            f.load_state_dict(state["augment"][n])
        if t.scaler is not None:
            t.scaler.load_state_dict(state["scaler"])
        t.feed.load_state_dict(state)
        t.algorithm.set_data(t.feed.data_info(t.algorithm.num_classes))
        t.step = int(state["step"])
        t.history = [(int(s), float(a)) for s, a in state["history"]]
        t.wall_s = float(state["wall_s"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match this run ({type(exc).__name__}: {exc})") from None
