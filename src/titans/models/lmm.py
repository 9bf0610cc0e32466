"""LMM: the neural long-term memory alone as the token mixer (over ``P ‖ x``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from titans.memory import NeuralMemory, NeuralMemoryCache

from .blocks import PersistentMemory
from .config import ModelConfig


def memory_with_prefix(memory: NeuralMemory, persistent: PersistentMemory | None, u: Tensor,
                       cache: NeuralMemoryCache | None, need_cache: bool = True
                       ) -> tuple[Tensor, Tensor | None, NeuralMemoryCache | None]:
    """Run the memory over ``P ‖ u`` on the first call (cache None), over ``u`` afterwards.
    Returns the outputs at u's positions, those at P's positions (or None) and the cache (None
    unless ``need_cache``)."""
    n_p = 0
    if cache is None and persistent is not None:
        p = persistent(u)
        n_p = p.shape[1]
        u = torch.cat([p, u], dim=1)
    y, cache = memory(u, cache, need_cache=need_cache)
    return y[:, n_p:], (y[:, :n_p] if n_p else None), cache


class LMMMixer(nn.Module):
    """Memory-only mixer. Cache: the memory's :class:`NeuralMemoryCache`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.persistent = PersistentMemory(c.n_persistent, c.d_model) if c.n_persistent else None
        self.memory = NeuralMemory(c.memory_config())

    def forward(self, u: Tensor, cache: NeuralMemoryCache | None = None, need_cache: bool = True
                ) -> tuple[Tensor, NeuralMemoryCache | None]:
        y, _, cache = memory_with_prefix(self.memory, self.persistent, u, cache, need_cache)
        return y, cache
