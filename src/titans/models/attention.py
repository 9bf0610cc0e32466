"""Attention with a persistent prefix, a sliding window and a bounded KV cache.

Every attention in the models is one pattern: keys are ``[prefix ‖ stream]``; the ``n_prefix``
prefix keys (persistent tokens, MAC's retrieved memory tokens) are visible to every query, and a
stream key at position p_k is visible to a query at position p_q iff ``0 ≤ p_q − p_k < window``
(``window=None``: full causal). Stream keys are contiguous, so the mask is fixed by
``(Tq, Tk, n_prefix, window, offset)`` with ``offset = p_q[0] − p_k[0]``.

Two exact paths compute it: FlexAttention with a block mask (CUDA; also runs unfused on CPU, which
the tests use to check it) and SDPA with a boolean mask (CPU, decoding, short inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

try:  # FlexAttention (torch >= 2.5)
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # pragma: no cover
    create_block_mask = flex_attention = None

_FLEX_COMPILED: dict[str, object] = {}


def attention_mask(tq: int, tk: int, n_prefix: int, window: int | None, offset: int,
                   device: torch.device | str = "cpu", paired: bool = False) -> Tensor:
    """Boolean ``[tq, tk]`` mask (True = visible) of the pattern described in the module doc.

    paired: the keys after the prefix are two blocks of equal length, a paired block (one extra
    token per stream token, e.g. MAC's per-token memory retrieval) then the stream; both follow
    the stream's causal (and window) rule, so query i sees paired token j exactly when it sees
    stream token j."""
    qi = torch.arange(tq, device=device).unsqueeze(1)
    ki = torch.arange(tk, device=device).unsqueeze(0)
    stream = ki - n_prefix
    if paired:
        half = (tk - n_prefix) // 2
        stream = torch.where(stream >= half, stream - half, stream)
    dist = qi + offset - stream
    visible = dist >= 0
    if window is not None:
        visible = visible & (dist < window)
    return visible | (ki < n_prefix)


def _mask_mod(n_prefix: int, window: int | None, offset: int, half: int | None = None):
    # No stand-in constant for "no window": the compiled kernel does int32 index arithmetic, and a
    # large bound (1 << 40) overflowed there (seen on an H100: wrong outputs, eager flex was right).
    # half: length of the paired block (paired=True in attention_mask), None when there is none.
    def stream_index(kv_idx):
        j = kv_idx - n_prefix
        return j if half is None else torch.where(j >= half, j - half, j)

    if window is None:
        def mask_mod(b, h, q_idx, kv_idx):
            return (kv_idx < n_prefix) | (q_idx + offset - stream_index(kv_idx) >= 0)
    else:
        def mask_mod(b, h, q_idx, kv_idx):
            dist = q_idx + offset - stream_index(kv_idx)
            return (kv_idx < n_prefix) | ((dist >= 0) & (dist < window))

    return mask_mod


@lru_cache(maxsize=64)
def block_mask(tq: int, tk: int, n_prefix: int, window: int | None, offset: int, device: str,
               paired: bool = False):
    """FlexAttention block mask of the same pattern (cached per shape)."""
    half = (tk - n_prefix) // 2 if paired else None
    return create_block_mask(_mask_mod(n_prefix, window, offset, half), None, None, tq, tk, device=device)


def _flex(q: Tensor, k: Tensor, v: Tensor, bm) -> Tensor:
    if q.is_cuda:
        fn = _FLEX_COMPILED.get("flex")
        if fn is None:
            fn = _FLEX_COMPILED["flex"] = torch.compile(flex_attention, dynamic=False)
        return fn(q, k, v, block_mask=bm)
    return flex_attention(q, k, v, block_mask=bm)


def attend(q: Tensor, k: Tensor, v: Tensor, n_prefix: int = 0, window: int | None = None,
           offset: int = 0, backend: str = "auto", paired: bool = False) -> Tensor:
    """Masked attention. q: ``[B, H, Tq, D]``; k, v: ``[B, H, Tk, D]`` → ``[B, H, Tq, D]``.

    backend: ``auto`` (flex on CUDA for cache-free calls with Tq ≥ 128, SDPA otherwise), ``flex``
    or ``sdpa``. Calls that continue a cache (offset > 0) stay on SDPA under ``auto``: the mask
    function is compiled into the kernel, so every new offset would cost a recompilation.
    paired: see :func:`attention_mask`.
    """
    tq, tk = q.shape[-2], k.shape[-2]
    if n_prefix == 0 and window is None and offset == 0 and tq == tk and not paired:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # flash path
    use_flex = backend == "flex" or (backend == "auto" and q.is_cuda and tq >= 128 and offset == 0)
    if use_flex and flex_attention is not None:
        if q.dtype != k.dtype or k.dtype != v.dtype:
            k, v = k.to(q.dtype), v.to(q.dtype)
        bm = block_mask(tq, tk, n_prefix, window, offset, str(q.device), paired)
        return _flex(q, k, v, bm)
    mask = attention_mask(tq, tk, n_prefix, window, offset, q.device, paired)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# ------------------------------------------------------------------------------------ rotary
_ROPE_CACHE_POSITIONS = 1 << 16
_ROPE_TABLES: dict[tuple[int, float, str], tuple[Tensor, Tensor]] = {}


def _angles(positions: Tensor, dim: int, theta: float) -> tuple[Tensor, Tensor]:
    inv_freq = theta ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim)
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq  # [T, D/2]
    return angles.cos(), angles.sin()


def rope_cos_sin(start: int, length: int, dim: int, theta: float, device: torch.device | str
                 ) -> tuple[Tensor, Tensor]:
    """float64 cos, sin ``[length, dim/2]`` of positions ``start … start+length−1``. Positions
    below 2^16 come from a table built once per (dim, θ, device) — the same float64 values as
    computing them, so every split of a sequence sees the same rotation either way."""
    if start < 0 or length < 0:
        raise ValueError(f"start and length must be >= 0, got {start} and {length}")
    end = start + length
    if end > _ROPE_CACHE_POSITIONS:
        return _angles(torch.arange(start, end, device=device), dim, theta)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (dim, float(theta), str(device))
    table = _ROPE_TABLES.get(key)
    if table is None:
        # A plain tensor even when first needed under inference_mode (else autograd could not
        # save it for a later training step's backward).
        with torch.inference_mode(False), torch.no_grad():
            table = _angles(torch.arange(_ROPE_CACHE_POSITIONS, device=device), dim, theta)
        _ROPE_TABLES[key] = table
    return table[0][start:end], table[1][start:end]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x ``[B, H, T, D]`` (half-split form) by angles given as cos, sin ``[T, D/2]``."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    d = x.shape[-1]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def rotary(x: Tensor, positions: Tensor, theta: float) -> Tensor:
    """Rotary position embedding (half-split form). x: ``[B, H, T, D]``; positions: ``[T]`` ints.
    Angles are formed in float64 so that far positions stay exact and every split of a sequence
    sees the same rotation."""
    return apply_rotary(x, *_angles(positions, x.shape[-1], theta))


# --------------------------------------------------------------------------- self-attention
@dataclass
class KVCache:
    """Keys/values of one attention layer: the constant prefix and the last ``≤ window`` stream
    tokens (all of them for full attention). ``pos``: stream tokens seen so far."""

    prefix_k: Tensor | None  # [B, H, Np, D]
    prefix_v: Tensor | None
    k: Tensor  # [B, H, L, D]
    v: Tensor
    pos: int
    paired_k: Tensor | None = None  # [B, H, L, D]: one paired token per cached stream token
    paired_v: Tensor | None = None

    def detach(self) -> KVCache:
        def d(t):
            return None if t is None else t.detach()

        return KVCache(d(self.prefix_k), d(self.prefix_v), self.k.detach(), self.v.detach(), self.pos,
                       d(self.paired_k), d(self.paired_v))


class SelfAttention(nn.Module):
    """Multi-head attention with RoPE over ``[prefix ‖ x]``: the prefix (given on the first call
    only) is visible to every position; x attends causally within ``window`` (None = full)."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, rope_theta: float,
                 window: int | None, backend: str = "auto"):
        super().__init__()
        self.n_heads, self.head_dim, self.window = n_heads, head_dim, window
        self.rope_theta, self.backend = rope_theta, backend
        self.qkv = nn.Linear(d_model, 3 * n_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, d_model, bias=False)

    def _project(self, x: Tensor, start: int) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = rearrange(self.qkv(x), "b t (s h d) -> s b h t d", s=3, h=self.n_heads)
        cos, sin = rope_cos_sin(start, x.shape[1], self.head_dim, self.rope_theta, x.device)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def _project_kv(self, x: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Keys and values only (prefix and paired tokens ask no queries)."""
        width = self.n_heads * self.head_dim
        k, v = rearrange(F.linear(x, self.qkv.weight[width:]), "b t (s h d) -> s b h t d", s=2,
                         h=self.n_heads)
        cos, sin = rope_cos_sin(start, x.shape[1], self.head_dim, self.rope_theta, x.device)
        return apply_rotary(k, cos, sin), v

    def forward(self, x: Tensor, prefix: Tensor | None = None, cache: KVCache | None = None,
                paired: Tensor | None = None) -> tuple[Tensor, KVCache]:
        """x: ``[B, T, d_model]``; prefix: ``[B, Np, d_model]`` (first call only) → output
        ``[B, T, d_model]`` and the cache to continue the same sequences.

        paired: ``[B, T, d_model]``, one extra key/value token per token of x, at the same
        position and visible under the same causal rule (MAC's per-token memory retrieval).
        Give it on every call of a sequence or on none."""
        if cache is not None and prefix is not None:
            raise ValueError("prefix is only accepted on the first call (cache=None)")
        if paired is not None and paired.shape != x.shape:
            raise ValueError(f"paired must have x's shape {tuple(x.shape)}, got {tuple(paired.shape)}")
        if cache is None:
            n_p = 0 if prefix is None else prefix.shape[1]
            pk = pv = None
            if n_p:
                pk, pv = self._project_kv(prefix, 0)
            empty = x.new_zeros(x.shape[0], self.n_heads, 0, self.head_dim)
            cache = KVCache(pk, pv, empty, empty, 0, *((empty, empty) if paired is not None else ()))
        if (paired is None) != (cache.paired_k is None):
            raise ValueError("paired must be given on every call of a sequence or on none")
        n_p = 0 if cache.prefix_k is None else cache.prefix_k.shape[2]
        start = n_p + cache.pos
        q, k, v = self._project(x, start)
        k_all = torch.cat([cache.k, k], dim=2)
        v_all = torch.cat([cache.v, v], dim=2)
        keys, vals, pk_all, pv_all = k_all, v_all, None, None
        if paired is not None:
            pk, pv = self._project_kv(paired, start)
            pk_all, pv_all = torch.cat([cache.paired_k, pk], dim=2), torch.cat([cache.paired_v, pv], dim=2)
            keys, vals = torch.cat([pk_all, k_all], dim=2), torch.cat([pv_all, v_all], dim=2)
        if n_p:
            keys = torch.cat([cache.prefix_k, keys], dim=2)
            vals = torch.cat([cache.prefix_v, vals], dim=2)
        y = attend(q, keys, vals, n_p, self.window, offset=cache.k.shape[2], backend=self.backend,
                   paired=paired is not None)
        if self.window is not None:
            k_all, v_all = k_all[:, :, -self.window:], v_all[:, :, -self.window:]
            if paired is not None:
                pk_all, pv_all = pk_all[:, :, -self.window:], pv_all[:, :, -self.window:]
        new_cache = KVCache(cache.prefix_k, cache.prefix_v, k_all, v_all, cache.pos + x.shape[1],
                            pk_all, pv_all)
        return self.o_proj(rearrange(y, "b h t d -> b t (h d)")), new_cache
