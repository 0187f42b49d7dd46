"""Seeded, resumable, infinite streams of index batches over a fixed pool of dataset indices."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def _epoch_seed(seed: int, name: str, epoch: int) -> int:
    digest = hashlib.sha256(f"{seed}/{name}/{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class IndexStream:
    """Yields batches of pool indices; each epoch is a fresh permutation seeded by (seed, name, epoch).

    The position is two integers (epoch, offset), so a checkpoint restores the stream exactly. Batches run
    across epoch boundaries, so a pool smaller than the batch (e.g. 20 labels, batch 64) still works.
    """

    def __init__(self, pool: np.ndarray | torch.Tensor, batch_size: int, seed: int, name: str) -> None:
        self.pool = torch.as_tensor(np.asarray(pool), dtype=torch.int64)
        if len(self.pool) == 0:
            raise ValueError(f"stream {name!r} has an empty pool")
        self.batch_size, self.seed, self.name = batch_size, seed, name
        self.epoch, self.offset = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.name, epoch))
        return self.pool[torch.randperm(len(self.pool), generator=g)]

    def next(self) -> torch.Tensor:
        parts, need = [], self.batch_size
        while need:
            take = min(need, len(self._perm) - self.offset)
            parts.append(self._perm[self.offset : self.offset + take])
            self.offset += take
            need -= take
            if self.offset == len(self._perm):
                self.epoch, self.offset = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
        return torch.cat(parts)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._perm = self._permutation(self.epoch)
