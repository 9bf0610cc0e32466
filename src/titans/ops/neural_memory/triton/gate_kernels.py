"""Triton kernels for the gate inputs of the memory kernels (kernel-notes V10).

One program per (chunk, sequence·head) forms, from the chunk's N gates θ, η, α, everything
:func:`..function.chunk_gates` builds with ~34 PyTorch ops (and ~63 in its backward):

- ``pa[t, i] = Π_{j=i+1..t} (1 - α_j)`` and ``pe[t, i] = Π_{j=i+1..t} η_j`` (``i ≤ t``, else 0),
  built in registers by one pass over the chunk's gates (no division, exact at zeros);
- ``A_t = (1 - α_0) pa[t, 0]``, ``E_t = η_0 pe[t, 0]``, ``G = (pa @ pe) ∘ θ_s``,
  ``c = pa @ E``, ``s_last = pe[N-1, :] ∘ θ``, and the rows/scalars of the chunk's last real
  token (``ends = [A, c, E, 0]``, ``gn = G[last, :]``).

The backward recomputes pa, pe (cheaper than storing ``[N, N]`` twice per chunk) and applies the
same zero-safe product rule as :class:`..chunked._SegmentProducts`:
``∂/∂x_j = Σ_i S[j, i] M[i, j]`` with ``M = gᵀ P`` and ``S[j, i] = Π_{k=i+1..j-1} x_k`` (i < j).
Dots are exact fp32 (``ieee``): the gates enter the memory recurrence as products of up to N
factors, so tf32's 10-bit mantissa would show in A and G.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _products(al_ptr, et_ptr, base, t, i, N: tl.constexpr, EXCLUSIVE: tl.constexpr):
    """pa, pe ``[N, N]``: the products over ``i < j ≤ t`` (``EXCLUSIVE``: ``i < j < t``, the
    row-shifted S of the backward; 0 where ``i ≥ t``)."""
    if EXCLUSIVE:
        one = tl.where(i < t, 1.0, 0.0)
    else:
        one = tl.where(i <= t, 1.0, 0.0)
    pa = one
    pe = one
    for j in range(N):
        x_j = 1.0 - tl.load(al_ptr + base + j)
        e_j = tl.load(et_ptr + base + j)
        if EXCLUSIVE:
            inside = (i < j) & (j < t)
        else:
            inside = (i < j) & (j <= t)
        pa = tl.where(inside, pa * x_j, pa)
        pe = tl.where(inside, pe * e_j, pe)
    return pa, pe


@triton.jit
def _chunk(th_ptr, et_ptr, al_ptr, NC, TP, last_of_last, N: tl.constexpr):
    """This program's chunk: its offset, index vectors, θ, the products pa, pe, their first
    columns pa0, pe0 and first factors x0, e0, and the index of its last real token."""
    ch = tl.program_id(0)
    bh = tl.program_id(1)
    base = bh * TP + ch * N
    r = tl.arange(0, N)
    t = r[:, None]
    i = r[None, :]
    th = tl.load(th_ptr + base + r)
    pa, pe = _products(al_ptr, et_ptr, base, t, i, N, False)
    x0 = 1.0 - tl.load(al_ptr + base)
    e0 = tl.load(et_ptr + base)
    pa0 = tl.sum(tl.where(i == 0, pa, 0.0), axis=1)
    pe0 = tl.sum(tl.where(i == 0, pe, 0.0), axis=1)
    last = tl.where(ch == NC - 1, last_of_last, N - 1)
    return ch, bh, base, r, t, i, th, pa, pe, pa0, pe0, x0, e0, last


@triton.jit
def gates_fwd_kernel(th_ptr, et_ptr, al_ptr, A_ptr, c_ptr, G_ptr, ends_ptr, gn_ptr, sn_ptr,
                     NC, TP, last_of_last, N: tl.constexpr):
    ch, bh, base, r, t, i, th, pa, pe, pa0, pe0, x0, e0, last = _chunk(th_ptr, et_ptr, al_ptr, NC, TP,
                                                                      last_of_last, N)
    A = x0 * pa0
    E = e0 * pe0
    G = tl.dot(pa, pe, input_precision="ieee") * th[None, :]
    c = tl.sum(pa * E[None, :], axis=1)
    sn = tl.sum(tl.where(t == N - 1, pe, 0.0), axis=0) * th
    gn = tl.sum(tl.where(t == last, G, 0.0), axis=0)
    at_last = r == last
    a_l = tl.sum(tl.where(at_last, A, 0.0))
    c_l = tl.sum(tl.where(at_last, c, 0.0))
    e_l = tl.sum(tl.where(at_last, E, 0.0))
    out = (bh * NC + ch) * N
    tl.store(A_ptr + out + r, A)
    tl.store(c_ptr + out + r, c)
    tl.store(gn_ptr + out + r, gn)
    tl.store(sn_ptr + out + r, sn)
    tl.store(G_ptr + out * N + t * N + i, G)
    k = tl.arange(0, 4)
    ends = tl.where(k == 0, a_l, tl.where(k == 1, c_l, tl.where(k == 2, e_l, 0.0)))
    tl.store(ends_ptr + (bh * NC + ch) * 4 + k, ends)


@triton.jit
def gates_bwd_kernel(th_ptr, et_ptr, al_ptr, dA_ptr, dc_ptr, dG_ptr, dends_ptr, dgn_ptr, dsn_ptr,
                     dth_ptr, det_ptr, dal_ptr, NC, TP, last_of_last, N: tl.constexpr):
    ch, bh, base, r, t, i, th, pa, pe, pa0, pe0, x0, e0, last = _chunk(th_ptr, et_ptr, al_ptr, NC, TP,
                                                                      last_of_last, N)
    E = e0 * pe0
    at_last = r == last
    out = (bh * NC + ch) * N
    dends = dends_ptr + (bh * NC + ch) * 4
    # Fold the end-of-chunk outputs into the whole-chunk cotangents.
    dG = tl.load(dG_ptr + out * N + t * N + i)
    dG += tl.where(t == last, tl.load(dgn_ptr + out + r)[None, :], 0.0)
    dA = tl.load(dA_ptr + out + r) + tl.where(at_last, tl.load(dends), 0.0)
    dc = tl.load(dc_ptr + out + r) + tl.where(at_last, tl.load(dends + 1), 0.0)
    dE = tl.where(at_last, tl.load(dends + 2), 0.0)
    dsn = tl.load(dsn_ptr + out + r)
    pe_last = tl.sum(tl.where(t == N - 1, pe, 0.0), axis=0)
    # G = (pa @ pe) ∘ θ_s, c = pa @ E, sn = pe[N-1] ∘ θ.
    dth = tl.sum(dG * tl.dot(pa, pe, input_precision="ieee"), axis=0) + dsn * pe_last
    dQ = dG * th[None, :]
    dpa = tl.dot(dQ, tl.trans(pe), input_precision="ieee") + dc[:, None] * E[None, :]
    dpe = tl.dot(tl.trans(pa), dQ, input_precision="ieee")
    dpe += tl.where(t == N - 1, (dsn * th)[None, :], 0.0)
    dE += tl.sum(pa * dc[:, None], axis=0)
    # A = x0 · pa[:, 0], E = e0 · pe[:, 0].
    dpa += tl.where(i == 0, (dA * x0)[:, None], 0.0)
    dpe += tl.where(i == 0, (dE * e0)[:, None], 0.0)
    # Segment products: ∂/∂x_j = Σ_i S[j, i] M[i, j], M = dPᵀ P.
    sa, se = _products(al_ptr, et_ptr, base, t, i, N, True)
    dx = tl.sum(sa * tl.trans(tl.dot(tl.trans(dpa), pa, input_precision="ieee")), axis=1)
    de = tl.sum(se * tl.trans(tl.dot(tl.trans(dpe), pe, input_precision="ieee")), axis=1)
    dx += tl.where(r == 0, tl.sum(dA * pa0), 0.0)
    de += tl.where(r == 0, tl.sum(dE * pe0), 0.0)
    tl.store(dth_ptr + base + r, dth)
    tl.store(det_ptr + base + r, de)
    tl.store(dal_ptr + base + r, -dx)
