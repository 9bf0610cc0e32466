"""A deterministic, resumable, rank-sharded order over training sequences.

The order is an endless stream of epochs, each a fresh permutation of ``range(num_items)``
drawn from ``seed + epoch``. The sampler's whole state is ``position``: how many items of the
stream have been consumed, globally. Step s of a run with global batch G reads stream items
``[s·G, (s+1)·G)``; rank r of W takes the contiguous slice r of W, so the same global batch is
seen whatever the world size, and a checkpoint's position resumes under any world size.
"""

from __future__ import annotations

import torch


class ResumableSampler:
    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True, position: int = 0):
        if not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"num_items must be a positive int (is the training data shorter than one "
                             f"sequence?), got {num_items!r}")
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.position = position
        self._cache: tuple[int, torch.Tensor] | None = None

    def _perm(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                perm = torch.randperm(self.num_items, generator=g)
            else:
                perm = torch.arange(self.num_items)
            self._cache = (epoch, perm)
        return self._cache[1]

    def peek(self, start: int, count: int) -> list[int]:
        """Stream items ``[start, start + count)`` (no state change)."""
        out = []
        for pos in range(start, start + count):
            epoch, i = divmod(pos, self.num_items)
            out.append(int(self._perm(epoch)[i]))
        return out

    def next_global_batch(self, global_batch: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """This rank's share (contiguous slice ``rank`` of ``world_size``) of the next global batch."""
        if global_batch % world_size:
            raise ValueError(f"global_batch {global_batch} must be divisible by world_size {world_size}")
        per_rank = global_batch // world_size
        items = self.peek(self.position + rank * per_rank, per_rank)
        self.position += global_batch
        return items

    @property
    def epoch(self) -> float:
        return self.position / self.num_items

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed, "num_items": self.num_items,
                "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "num_items", "shuffle"):
            if state[key] != getattr(self, key):
                raise ValueError(f"checkpoint sampler {key}={state[key]!r} differs from this run's "
                                 f"{getattr(self, key)!r}: the data or seed changed since the checkpoint")
        self.position = int(state["position"])
