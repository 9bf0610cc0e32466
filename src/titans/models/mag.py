"""MAG (memory as gate, Titans Fig. 3b / §4.2): sliding-window attention over ``P ‖ x`` whose
window always includes the persistent tokens, in parallel with the memory over ``P ‖ x``;
``o = W_o (norm(y) ⊙ σ(norm(M(x))))``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from titans.memory import NeuralMemory, NeuralMemoryCache

from .attention import KVCache, SelfAttention
from .blocks import Gate, PersistentMemory
from .config import ModelConfig
from .lmm import memory_with_prefix


@dataclass
class HybridCache:
    """Memory cache and attention KV cache of one MAG / MAL layer."""

    memory: NeuralMemoryCache
    attn: KVCache

    def detach(self) -> HybridCache:
        return HybridCache(self.memory.detach(), self.attn.detach())


class MAGMixer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.persistent = PersistentMemory(c.n_persistent, c.d_model) if c.n_persistent else None
        self.memory = NeuralMemory(c.memory_config())
        self.attn = SelfAttention(c.d_model, c.n_heads, c.head_dim, c.rope_theta, c.window,
                                  c.attn_backend)
        self.gate = Gate(c.d_model, c.norm_eps, c.gate_activation)

    def forward(self, u: Tensor, cache: HybridCache | None = None, need_cache: bool = True
                ) -> tuple[Tensor, HybridCache | None]:
        first = cache is None
        m, _, mem_cache = memory_with_prefix(self.memory, self.persistent, u,
                                             None if first else cache.memory, need_cache)
        prefix = self.persistent(u) if (first and self.persistent is not None) else None
        y, attn_cache = self.attn(u, prefix, None if first else cache.attn)
        return self.gate(y, m), (HybridCache(mem_cache, attn_cache) if need_cache else None)
