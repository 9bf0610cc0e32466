"""MAC (memory as context, Titans Fig. 3a / §4.1), in a causal form.

Per segment S of C tokens, with M the memory state from before the segment:

    h = RMSNorm(M*(q))                  N_l retrieved tokens; q from the last N_l inputs *before*
                                        the segment (learned queries for the first segment)
    y = Attn(P ‖ h ‖ S)[S]              P and h visible to every position, causal inside S
    m = M(y)                            write y into the memory token by token (RMS-normalised
                                        first with ``mac_write_norm``; S instead of y with
                                        ``mac_write="input"``), read back M_t*(y_t)
    o = W_o (norm(y) ⊙ σ(norm(m)))

The paper retrieves with queries from the current segment and shows the retrieved tokens to the
whole segment, which lets position i see tokens after i; taking the queries from before the
segment keeps every logit causal. ``mac_retrieval="token"`` is the other causal form: one
retrieved token ``h_i = M*(q_i)`` beside each token of S, from its own query, with h_j and S_j
visible to position i when j ≤ i (docs/models.md compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from titans.memory import NeuralMemory, NeuralMemoryCache
from titans.ops import MemoryState

from .attention import KVCache, SelfAttention
from .blocks import Gate, PersistentMemory, RMSNormF32
from .config import ModelConfig


@dataclass
class MACCache:
    """memory: the memory's cache (None before the first write). attn: KV cache of the current
    segment (None at a segment boundary). seg_pos: tokens of the current segment seen.
    recent: ``prefix`` retrieval: the last ``≤ N_l`` mixer inputs ``[B, n, d_model]`` (next
    queries). seg_state: ``token`` retrieval: the memory as it stood when the current segment
    began (None: the initial memory); query_conv: the retrieval queries' convolution tail."""

    memory: NeuralMemoryCache | None
    attn: KVCache | None
    seg_pos: int
    recent: Tensor | None
    seg_state: MemoryState | None = None
    query_conv: Tensor | None = None

    def detach(self) -> MACCache:
        def d(t):
            return None if t is None else t.detach()

        return MACCache(None if self.memory is None else self.memory.detach(), d(self.attn),
                        self.seg_pos, d(self.recent), d(self.seg_state), d(self.query_conv))


class MACMixer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.segment_len, self.n_retrieve = c.segment_len, c.n_retrieve
        self.per_token = c.mac_retrieval == "token"
        self.persistent = PersistentMemory(c.n_persistent, c.d_model) if c.n_persistent else None
        self.memory = NeuralMemory(c.memory_config())
        if not self.per_token:
            self.retrieve_init = nn.Parameter(torch.randn(c.n_retrieve, c.d_model))
        self.retrieved_norm = RMSNormF32(c.d_model, eps=c.norm_eps)
        self.attn = SelfAttention(c.d_model, c.n_heads, c.head_dim, c.rope_theta, None,
                                  c.attn_backend)
        self.gate = Gate(c.d_model, c.norm_eps, c.gate_activation)
        self.write_norm = RMSNormF32(c.d_model, eps=c.norm_eps) if c.mac_write_norm else None
        self.write_input = c.mac_write == "input"

    def _context(self, u: Tensor, recent: Tensor | None, mem: NeuralMemoryCache | None) -> Tensor | None:
        """The prefix for a segment starting now: ``P ‖ h`` ``[B, N_p + N_l, d_model]`` for
        ``prefix`` retrieval, ``P`` (or None) for ``token`` retrieval."""
        p = None if self.persistent is None else self.persistent(u)
        if self.per_token:
            return p
        if recent is None or recent.shape[1] == 0:
            queries = self.retrieve_init.to(u.dtype).unsqueeze(0).expand(u.shape[0], -1, -1)
        else:
            queries = recent
        h = self.retrieved_norm(self.memory.retrieve(queries, None if mem is None else mem.state))
        h = h.to(u.dtype)
        return h if p is None else torch.cat([p, h], dim=1)

    def forward(self, u: Tensor, cache: MACCache | None = None, need_cache: bool = True
                ) -> tuple[Tensor, MACCache]:
        """``need_cache=False``: the returned cache is not used (a training step), so the last
        piece's memory call may skip keeping a chunk tail's start weights (one op call)."""
        c = MACCache(None, None, 0, None) if cache is None else cache
        mem, attn, seg_pos, recent = c.memory, c.attn, c.seg_pos, c.recent
        seg_state, query_conv = c.seg_state, c.query_conv
        outs, i, T = [], 0, u.shape[1]
        while i < T:
            prefix = None
            if seg_pos == 0:
                prefix, attn = self._context(u, recent, mem), None
                seg_state = None if mem is None else mem.state
            n = min(T - i, self.segment_len - seg_pos)
            piece = u[:, i:i + n]
            paired = None
            if self.per_token:  # h_i = M*_{segment start}(q_i), beside token i
                h, query_conv = self.memory.read(piece, seg_state, query_conv)
                paired = self.retrieved_norm(h).to(u.dtype)
            y, attn = self.attn(piece, prefix, attn, paired=paired)
            src = piece if self.write_input else y  # mac_write: the paper writes y
            m, mem = self.memory(src if self.write_norm is None else self.write_norm(src), mem,
                                 need_cache=need_cache or i + n < T)
            outs.append(self.gate(y, m))
            if not self.per_token:
                recent = piece if recent is None else torch.cat([recent, piece], dim=1)
                recent = recent[:, -self.n_retrieve:]
            seg_pos = (seg_pos + n) % self.segment_len
            i += n
        if recent is None and not self.per_token:
            recent = u[:, :0]
        out = torch.cat(outs, dim=1) if outs else u[:, :0]
        return out, MACCache(mem, attn if seg_pos else None, seg_pos, recent, seg_state, query_conv)
