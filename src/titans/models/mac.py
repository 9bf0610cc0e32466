"""MAC (memory as context, Titans Fig. 3a / §4.1), in a causal form.

Per segment S of C tokens, with M the memory state from before the segment:

    h = RMSNorm(M*(q))                  N_l retrieved tokens; q from the last N_l inputs *before*
                                        the segment (learned queries for the first segment)
    y = Attn(P ‖ h ‖ S)[S]              P and h visible to every position, causal inside S
    m = M(y)                            write y into the memory token by token, read back M_t*(y_t)
    o = W_o (norm(y) ⊙ σ(norm(m)))

The paper retrieves with queries from the current segment and shows the retrieved tokens to the
whole segment, which lets position i see tokens after i; taking the queries from before the
segment keeps every logit causal (docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from titans.memory import NeuralMemory, NeuralMemoryCache

from .attention import KVCache, SelfAttention
from .blocks import Gate, PersistentMemory, RMSNormF32
from .config import ModelConfig


@dataclass
class MACCache:
    """memory: the memory's cache (None before the first write). attn: KV cache of the current
    segment ``[P ‖ h ‖ S_{<i}]`` (None at a segment boundary). seg_pos: tokens of the current
    segment seen. recent: the last ``≤ N_l`` mixer inputs ``[B, n, d_model]`` (next queries)."""

    memory: NeuralMemoryCache | None
    attn: KVCache | None
    seg_pos: int
    recent: Tensor

    def detach(self) -> MACCache:
        return MACCache(None if self.memory is None else self.memory.detach(),
                        None if self.attn is None else self.attn.detach(), self.seg_pos,
                        self.recent.detach())


class MACMixer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.segment_len, self.n_retrieve = c.segment_len, c.n_retrieve
        self.persistent = PersistentMemory(c.n_persistent, c.d_model) if c.n_persistent else None
        self.memory = NeuralMemory(c.memory_config())
        self.retrieve_init = nn.Parameter(torch.randn(c.n_retrieve, c.d_model))
        self.retrieved_norm = RMSNormF32(c.d_model, eps=c.norm_eps)
        self.attn = SelfAttention(c.d_model, c.n_heads, c.head_dim, c.rope_theta, None,
                                  c.attn_backend)
        self.gate = Gate(c.d_model, c.norm_eps, c.gate_activation)

    def _context(self, u: Tensor, recent: Tensor | None, mem: NeuralMemoryCache | None) -> Tensor:
        """``P ‖ h`` for a segment starting now: ``[B, N_p + N_l, d_model]``."""
        if recent is None or recent.shape[1] == 0:
            queries = self.retrieve_init.to(u.dtype).unsqueeze(0).expand(u.shape[0], -1, -1)
        else:
            queries = recent
        h = self.retrieved_norm(self.memory.retrieve(queries, None if mem is None else mem.state))
        h = h.to(u.dtype)
        return h if self.persistent is None else torch.cat([self.persistent(u), h], dim=1)

    def forward(self, u: Tensor, cache: MACCache | None = None) -> tuple[Tensor, MACCache]:
        mem, attn, seg_pos, recent = (None, None, 0, None) if cache is None else (
            cache.memory, cache.attn, cache.seg_pos, cache.recent)
        outs, i, T = [], 0, u.shape[1]
        while i < T:
            prefix = None
            if seg_pos == 0:
                prefix, attn = self._context(u, recent, mem), None
            n = min(T - i, self.segment_len - seg_pos)
            piece = u[:, i:i + n]
            y, attn = self.attn(piece, prefix, attn)
            m, mem = self.memory(y, mem)
            outs.append(self.gate(y, m))
            recent = piece if recent is None else torch.cat([recent, piece], dim=1)
            recent = recent[:, -self.n_retrieve:]
            seg_pos = (seg_pos + n) % self.segment_len
            i += n
        if recent is None:
            recent = u[:, :0]
        out = torch.cat(outs, dim=1) if outs else u[:, :0]
        return out, MACCache(mem, attn if seg_pos else None, seg_pos, recent)
