"""Chunk-parallel neural memory in PyTorch: matmuls inside a chunk, a loop only across chunks.

Within a chunk every token's gradient is taken at the chunk-start weights ``W_0``, so each
layer's gradient is an outer product ``u_i = x_iᵀ δ_i`` of that layer's input row and
output-gradient row. Unrolling ``S_t = η_t S_{t-1} - θ_t u_t`` and ``W_t = a_t W_{t-1} + S_t``
(``a = 1 - α``) from the chunk-start state ``(W, S)`` gives (docs/algorithm.md)::

    W_t = A_t W + c_t S - Σ_{i≤t} G[t, i] u_i
    A_t = Π_{j≤t} a_j,   E_t = Π_{j≤t} η_j,   c_t = Σ_{s≤t} (A_t/A_s) E_s
    G[t, i] = θ_i Σ_{s=i..t} (A_t/A_s)(E_s/E_i)        (b×b, lower triangular)

so the query pass of layer l is ``diag(A) X W + diag(c) X S - (G ⊙ X Xkᵀ) Δ`` (the dual form:
no per-token weights), and the chunk's end state uses the last row of ``G``. With a forget
target W̄ (``W_t = a_t W_{t-1} + α_t W̄ + S_t``, forgetting towards W̄ instead of towards zero)
the deviation ``W_t − W̄`` follows the recurrence above, so ``W_t`` gains ``(1 − A_t) W̄`` and
the query pass the term ``diag(1 − A) X W̄``. Products of gates
are formed by ``cumprod`` over masked matrices, never as ratios of cumulative products, so
``η = 0`` or ``α = 1`` are exact and gradients through zeros stay finite.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .activations import get_activation


class GateMatrices(NamedTuple):
    """Per-chunk closed-form coefficients, leading dims ``[...]`` and chunk length n."""

    A: Tensor  # [..., n]     Π_{j≤t} a_j       (decay of the chunk-start weights)
    E: Tensor  # [..., n]     Π_{j≤t} η_j       (decay of the chunk-start momentum)
    c: Tensor  # [..., n]     weight on the chunk-start momentum in W_t
    G: Tensor  # [..., n, n]  weight of u_i in W_t
    s_last: Tensor  # [..., n]  weight of u_i in the chunk's final momentum


class _SegmentProducts(torch.autograd.Function):
    """``P[..., t, i] = Π_{j=i+1..t} x_j`` (i ≤ t), 0 above the diagonal, with a sync-free backward.

    ``torch.cumprod``'s CUDA backward asks the host whether the input holds a zero (``.item()``),
    which breaks CUDA-graph capture of a training step. Here the gradient is formed without
    dividing by x: the product without ``x_j`` is ``P[j-1, i] · P[t, j]``, so
    ``dL/dx_j = Σ_{i<j≤t} g[t, i] P[j-1, i] P[t, j] = Σ_i S[j, i] M[i, j]`` with ``M = gᵀ P`` and
    ``S`` = P shifted down one row — one batched matmul, exact at zeros."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        n = x.shape[-1]
        ones = torch.ones(n, n, dtype=torch.bool, device=x.device)
        strict_lower = torch.tril(ones, diagonal=-1)
        cols = torch.where(strict_lower, x.unsqueeze(-1), torch.ones((), dtype=x.dtype, device=x.device))
        p = torch.cumprod(cols, dim=-2).masked_fill(~torch.tril(ones), 0.0)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (p,) = ctx.saved_tensors
        m = g.mT @ p  # M[i, j] = Σ_t g[t, i] P[t, j]   (P[t, j] = 0 for t < j)
        shifted = torch.cat([torch.zeros_like(p[..., :1, :]), p[..., :-1, :]], dim=-2)  # S[j] = P[j-1]
        return (shifted * m.mT).sum(-1)  # Σ_i S[j, i] M[i, j]; S[j, i] = 0 unless i < j


def segment_products(x: Tensor) -> Tensor:
    """``P[..., t, i] = Π_{j=i+1..t} x_j`` for ``i ≤ t`` (1 on the diagonal), 0 above it.

    x: ``[..., n]`` → ``[..., n, n]``. Built by a cumulative product down the columns of a
    masked matrix, so zeros in x give exact zeros and finite gradients; the backward makes no
    host sync (CUDA-graph capturable).
    """
    return _SegmentProducts.apply(x)


def gate_matrices(theta: Tensor, eta: Tensor, alpha: Tensor) -> GateMatrices:
    """Closed-form in-chunk coefficients from per-token gates ``[..., n]``."""
    decay = 1.0 - alpha
    pa = segment_products(decay)  # A_t / A_s
    pe = segment_products(eta)  # E_s / E_i
    # Π_{j≤t} = x_0 · Π_{j=1..t}: no torch.cumprod, whose CUDA backward syncs with the host.
    A = decay[..., :1] * pa[..., :, 0]
    E = eta[..., :1] * pe[..., :, 0]
    G = (pa @ pe) * theta.unsqueeze(-2)
    c = (pa @ E.unsqueeze(-1)).squeeze(-1)
    s_last = pe[..., -1, :] * theta
    return GateMatrices(A, E, c, G, s_last)


def chunk_step(
    anchor: list[Tensor],
    weights: list[Tensor],
    momentum: list[Tensor],
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gm: GateMatrices,
    activation: str,
    target: list[Tensor] | None = None,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """One chunk of n tokens. anchor/weights/momentum[l]: ``[B, H, d_l, d_{l+1}]``; q, k, v:
    ``[B, H, n, D]``; gm with leading ``[B, H]``. Gradients are taken at ``anchor`` (the weights
    at the start of the chunk); the recurrence starts from ``(weights, momentum)``; ``target``
    (per layer, broadcastable to the weights) is the forget target W̄, None for zero.
    Returns ``y: [B, H, n, D]`` and the state after the chunk.
    """
    act, act_grad = get_activation(activation)
    depth = len(anchor)
    # Forward of the keys through the chunk-start memory; keep every layer's input.
    inputs, pre = [k], []
    h = k
    for layer, w in enumerate(anchor):
        h = h @ w
        if layer < depth - 1:
            pre.append(h)
            h = act(h)
            inputs.append(h)
    # Backward of 0.5*||M(k) - v||^2: output-gradient rows of every layer.
    deltas: list[Tensor] = [h - v]
    for layer in range(depth - 2, -1, -1):
        deltas.insert(0, (deltas[0] @ anchor[layer + 1].mT) * act_grad(pre[layer]))
    # Dual-form query pass through the per-token weights W_t, never materialised.
    A, c = gm.A.unsqueeze(-1), gm.c.unsqueeze(-1)
    h = q
    for layer in range(depth):
        scores = gm.G * (h @ inputs[layer].mT)
        out = A * (h @ weights[layer]) + c * (h @ momentum[layer]) - scores @ deltas[layer]
        if target is not None:
            out = out + (1.0 - A) * (h @ target[layer])
        h = act(out) if layer < depth - 1 else out
    # State after the chunk's last token.
    A_n, c_n, E_n = (x[..., -1, None, None] for x in (gm.A, gm.c, gm.E))
    g_n, s_n = gm.G[..., -1, :, None], gm.s_last.unsqueeze(-1)
    new_w = [A_n * w + c_n * s - x.mT @ (g_n * d)
             for w, s, x, d in zip(weights, momentum, inputs, deltas)]
    if target is not None:
        new_w = [w + (1.0 - A_n) * g for w, g in zip(new_w, target)]
    new_s = [E_n * s - x.mT @ (s_n * d) for s, x, d in zip(momentum, inputs, deltas)]
    return h, new_w, new_s


_COMPILED: dict[str, object] = {}


def set_compile(enabled: bool) -> None:
    """Run each chunk's step through ``torch.compile`` (fuses its elementwise work; the loop
    over chunks stays in Python). Off by default: compilation costs seconds per new shape."""
    if enabled:
        _COMPILED["step"] = torch.compile(chunk_step, dynamic=False)
    else:
        _COMPILED.pop("step", None)


def chunk_bounds(length: int, chunk_size: int, offset: int = 0) -> list[tuple[int, int]]:
    """Token ranges of the chunks of a call whose first token sits ``offset`` into a chunk."""
    bounds, start = [], 0
    first = chunk_size - offset if offset else chunk_size
    while start < length:
        end = min(length, start + (first if start == 0 else chunk_size))
        bounds.append((start, end))
        start = end
    return bounds


def chunked_neural_memory(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    weights: list[Tensor],
    momentum: list[Tensor],
    chunk_size: int,
    activation: str,
    anchor: list[Tensor] | None = None,
    offset: int = 0,
    forget_target: list[Tensor] | None = None,
) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]:
    """Chunked memory over ``[B, T, H, D]`` inputs from a ``[B, H, ...]`` state; ``forget_target``
    (one tensor per layer, broadcastable to its weights, or None for zero) is what α forgets towards.

    ``offset`` tokens of the current chunk were already consumed by an earlier call whose
    chunk-start weights are ``anchor``; the first chunk here is then ``chunk_size - offset``
    long and takes its gradients at ``anchor``. Returns ``y [B, T, H, D]``, the final weights
    and momentum, and the chunk-start weights of the last (possibly partial) chunk.
    """
    B, T, H, D = q.shape
    cdtype = weights[0].dtype
    qh, kh, vh = (x.to(cdtype).transpose(1, 2) for x in (q, k, v))  # [B, H, T, D]
    th, et, al = (g.to(cdtype).transpose(1, 2) for g in (theta, eta, alpha))  # [B, H, T]
    bounds = chunk_bounds(T, chunk_size, offset)
    target = None if forget_target is None else [g.to(cdtype) for g in forget_target]

    # Gate coefficients of all full, aligned chunks at once (in the state dtype, outside
    # autocast: they multiply fp32 state); partial chunks get their own.
    full = [i for i, (s, e) in enumerate(bounds) if e - s == chunk_size]
    with torch.autocast(q.device.type, enabled=False):
        batched = None
        if full:
            s0, n_full = bounds[full[0]][0], len(full)
            span = slice(s0, s0 + n_full * chunk_size)
            batched = gate_matrices(*(g[..., span].unflatten(-1, (n_full, chunk_size))
                                      for g in (th, et, al)))
        partial = {i: gate_matrices(th[..., s:e], et[..., s:e], al[..., s:e])
                   for i, (s, e) in enumerate(bounds) if e - s != chunk_size}

    ys = []
    chunk_anchor = anchor if (anchor is not None and offset) else weights
    for i, (s, e) in enumerate(bounds):
        if i > 0 or not offset:
            chunk_anchor = weights
        if i in partial:
            gm = partial[i]
        else:
            gm = GateMatrices(*(x[:, :, i - full[0]] for x in batched))
        step = _COMPILED.get("step", chunk_step)
        y, weights, momentum = step(chunk_anchor, weights, momentum, qh[:, :, s:e],
                                    kh[:, :, s:e], vh[:, :, s:e], gm, activation, target)
        ys.append(y)
    y = torch.cat(ys, dim=2) if ys else qh.new_zeros(B, H, 0, D)
    ends_inside_chunk = (offset + T) % chunk_size != 0
    last_anchor = chunk_anchor if ends_inside_chunk else weights
    return y.transpose(1, 2).to(q.dtype), weights, momentum, last_anchor
