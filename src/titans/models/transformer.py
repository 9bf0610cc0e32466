"""Transformer++ (Llama-style) token mixer: RoPE attention, full causal or sliding-window."""

from __future__ import annotations

from torch import Tensor, nn

from .attention import KVCache, SelfAttention
from .blocks import PersistentMemory
from .config import ModelConfig


class AttentionMixer(nn.Module):
    """Causal attention (``config.window`` = None: full; else sliding window), optionally with
    persistent tokens as an always-visible prefix. Cache: a :class:`KVCache`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.persistent = PersistentMemory(c.n_persistent, c.d_model) if c.n_persistent else None
        self.attn = SelfAttention(c.d_model, c.n_heads, c.head_dim, c.rope_theta, c.window,
                                  c.attn_backend)

    def forward(self, u: Tensor, cache: KVCache | None = None, need_cache: bool = True
                ) -> tuple[Tensor, KVCache]:
        """``need_cache`` is accepted for the common mixer interface; the KV cache is cheap."""
        prefix = self.persistent(u) if (cache is None and self.persistent is not None) else None
        return self.attn(u, prefix, cache)
