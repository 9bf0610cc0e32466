"""MAL (memory as layer, Titans §4.3): ``y = M(P ‖ x)``, then sliding-window attention over
``norm(y)`` whose window always includes the persistent positions (H3-style stacking)."""

from __future__ import annotations

from torch import Tensor, nn

from titans.memory import NeuralMemory

from .attention import SelfAttention
from .blocks import PersistentMemory, RMSNormF32
from .config import ModelConfig
from .lmm import memory_with_prefix
from .mag import HybridCache


class MALMixer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.persistent = PersistentMemory(c.n_persistent, c.d_model) if c.n_persistent else None
        self.memory = NeuralMemory(c.memory_config())
        self.norm = RMSNormF32(c.d_model, eps=c.norm_eps)
        self.attn = SelfAttention(c.d_model, c.n_heads, c.head_dim, c.rope_theta, c.window,
                                  c.attn_backend)

    def forward(self, u: Tensor, cache: HybridCache | None = None, need_cache: bool = True
                ) -> tuple[Tensor, HybridCache | None]:
        first = cache is None
        y, y_prefix, mem_cache = memory_with_prefix(self.memory, self.persistent, u,
                                                    None if first else cache.memory, need_cache)
        prefix = None if y_prefix is None else self.norm(y_prefix)
        out, attn_cache = self.attn(self.norm(y), prefix, None if first else cache.attn)
        return out, (HybridCache(mem_cache, attn_cache) if need_cache else None)
