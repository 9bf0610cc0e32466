"""Triton kernels of the chunked neural memory (L_M = 1 and 2), forward and backward.

One program per (batch, head) runs the whole chunk loop: the per-chunk work (keys forward,
deltas, dual-form query pass, end-of-chunk state) stays in registers, the fp32 state is
written once per chunk boundary into ``[BH, NC + 1, ...]`` snapshots (kept for the backward
pass, which recomputes each chunk from its start state). The hidden width of a 2-layer memory
is walked in tiles of ``BH`` columns; the reductions across it (the layer-2 output, the
``H_q Hᵀ`` scores) are accumulated over the tile loop.

Layouts (all contiguous, ``BHN = B*H``, ``NC`` chunks of ``N`` tokens, ``TP = NC*N``):
tokens ``[BHN, TP, D]``; gate vectors ``[BHN, NC, N]``; G ``[BHN, NC, N, N]``; end scalars
``[BHN, NC, 4]`` = (A_n, c_n, E_n, 0); state snapshots ``[BHN, NC + 1, d_in, d_out]``;
cotangent ping-pong buffers ``[2, BHN, d_in, d_out]``. See docs/kernel-notes.md for the algebra.

Kernel version V6 (``TITANS_TRITON_KERNELS=v6``, the ``*_state_kernel`` / ``*_query_kernel``
pairs at the end) splits each direction into a sequential state kernel (one program per
(batch, head), chunk loop inside) and a query-pass kernel over a (chunk, batch·head) grid.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Activation codes (constexpr ACT).
GELU, SILU, RELU, IDENTITY = 0, 1, 2, 3
_INV_SQRT2 = tl.constexpr(0.7071067811865476)  # jit code reads only constexpr globals
_INV_SQRT2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def _act(z, ACT: tl.constexpr):
    if ACT == 0:
        return z * (0.5 * (1.0 + tl.erf(z * _INV_SQRT2)))
    elif ACT == 1:
        return z * tl.sigmoid(z)
    elif ACT == 2:
        return tl.maximum(z, 0.0)
    else:
        return z


@triton.jit
def _act_d(z, ACT: tl.constexpr):
    if ACT == 0:
        return 0.5 * (1.0 + tl.erf(z * _INV_SQRT2)) + z * tl.exp(-0.5 * z * z) * _INV_SQRT2PI
    elif ACT == 1:
        s = tl.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    elif ACT == 2:
        return (z > 0).to(tl.float32)
    else:
        return z * 0.0 + 1.0


@triton.jit
def _act_dd(z, ACT: tl.constexpr):
    if ACT == 0:
        return tl.exp(-0.5 * z * z) * _INV_SQRT2PI * (2.0 - z * z)
    elif ACT == 1:
        s = tl.sigmoid(z)
        return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    else:
        return z * 0.0


@triton.jit
def _dot(a, b, PREC: tl.constexpr):
    """fp32-accumulated product; PREC = "ieee" | "tf32" (fp32 operands) or "bf16" (operands
    rounded to bf16, as cuBLAS under autocast does)."""
    if PREC == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    else:
        return tl.dot(a, b, input_precision=PREC)


# ----------------------------------------------------------------------------------- L_M = 1


@triton.jit
def fwd1_kernel(Q, K, V, Y, AV, CV, GM, ENDS, GN, SN, W, S, NC, TP,
                N: tl.constexpr, D: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dd = rd[:, None] * D + rd[None, :]
    DD = D * D
    for c in range(NC):
        tok = pid * TP * D + c * N * D
        q = tl.load(Q + tok + nd).to(tl.float32)
        k = tl.load(K + tok + nd).to(tl.float32)
        v = tl.load(V + tok + nd).to(tl.float32)
        g = pid * NC + c
        a = tl.load(AV + g * N + rn)
        cc = tl.load(CV + g * N + rn)
        gm = tl.load(GM + g * N * N + nn)
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DD
        w = tl.load(W + s_in + dd)
        s = tl.load(S + s_in + dd)
        d = _dot(k, w, PREC) - v
        m0 = gm * _dot(q, tl.trans(k), PREC)
        y = a[:, None] * _dot(q, w, PREC) + cc[:, None] * _dot(q, s, PREC) - _dot(m0, d, PREC)
        tl.store(Y + tok + nd, y)
        kt = tl.trans(k)
        tl.store(W + s_in + DD + dd, a_n * w + c_n * s - _dot(kt, gn[:, None] * d, PREC))
        tl.store(S + s_in + DD + dd, e_n * s - _dot(kt, sn[:, None] * d, PREC))
        tl.debug_barrier()


@triton.jit
def bwd1_kernel(Q, K, V, DY, AV, CV, GM, ENDS, GN, SN, W, S, DW, DS,
                DQ, DK, DV, DAV, DCV, DGM, DENDS, DGN, DSN, NC, TP, BHN,
                N: tl.constexpr, D: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dd = rd[:, None] * D + rd[None, :]
    DD = D * D
    for i in range(NC):
        c = NC - 1 - i
        d_in = ((c + 1) % 2 * BHN + pid) * DD
        d_out = ((c % 2) * BHN + pid) * DD
        tok = pid * TP * D + c * N * D
        q = tl.load(Q + tok + nd).to(tl.float32)
        k = tl.load(K + tok + nd).to(tl.float32)
        v = tl.load(V + tok + nd).to(tl.float32)
        dy = tl.load(DY + tok + nd).to(tl.float32)
        g = pid * NC + c
        a = tl.load(AV + g * N + rn)
        cc = tl.load(CV + g * N + rn)
        gm = tl.load(GM + g * N * N + nn)
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DD
        w = tl.load(W + s_in + dd)
        s = tl.load(S + s_in + dd)
        dwe = tl.load(DW + d_in + dd)
        dse = tl.load(DS + d_in + dd)
        # Recompute.
        d = _dot(k, w, PREC) - v
        qk = _dot(q, tl.trans(k), PREC)
        m0 = gm * qk
        qw = _dot(q, w, PREC)
        qs = _dot(q, s, PREC)
        # Query pass.
        da = tl.sum(dy * qw, 1)
        dc = tl.sum(dy * qs, 1)
        ady = a[:, None] * dy
        cdy = cc[:, None] * dy
        qt = tl.trans(q)
        dw = a_n * dwe + _dot(qt, ady, PREC)
        ds = c_n * dwe + e_n * dse + _dot(qt, cdy, PREC)
        dq = _dot(ady, tl.trans(w), PREC) + _dot(cdy, tl.trans(s), PREC)
        dm0 = -_dot(dy, tl.trans(d), PREC)
        dgm = dm0 * qk
        dqk = gm * dm0
        dq += _dot(dqk, k, PREC)
        dk = _dot(tl.trans(dqk), q, PREC)
        # End-of-chunk state.
        kdw = _dot(k, dwe, PREC)
        kds = _dot(k, dse, PREC)
        dd_ = -_dot(tl.trans(m0), dy, PREC) - gn[:, None] * kdw - sn[:, None] * kds
        dgn = -tl.sum(d * kdw, 1)
        dsn = -tl.sum(d * kds, 1)
        dk -= _dot(gn[:, None] * d, tl.trans(dwe), PREC) + _dot(sn[:, None] * d, tl.trans(dse), PREC)
        da_n = tl.sum(tl.sum(dwe * w, 1), 0)
        dc_n = tl.sum(tl.sum(dwe * s, 1), 0)
        de_n = tl.sum(tl.sum(dse * s, 1), 0)
        # Keys forward: d = k W - v.
        dk += _dot(dd_, tl.trans(w), PREC)
        dw += _dot(tl.trans(k), dd_, PREC)
        tl.store(DW + d_out + dd, dw)
        tl.store(DS + d_out + dd, ds)
        tl.store(DQ + tok + nd, dq)
        tl.store(DK + tok + nd, dk)
        tl.store(DV + tok + nd, -dd_)
        tl.store(DAV + g * N + rn, da)
        tl.store(DCV + g * N + rn, dc)
        tl.store(DGM + g * N * N + nn, dgm)
        tl.store(DENDS + g * 4, da_n)
        tl.store(DENDS + g * 4 + 1, dc_n)
        tl.store(DENDS + g * 4 + 2, de_n)
        tl.store(DGN + g * N + rn, dgn)
        tl.store(DSN + g * N + rn, dsn)
        tl.debug_barrier()


# ----------------------------------------------------------------------------------- L_M = 2


@triton.jit
def fwd2_kernel(Q, K, V, Y, AV, CV, GM, ENDS, GN, SN, W1, S1, W2, S2, NC, TP,
                N: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, BH: tl.constexpr,
                ACT: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    rj = tl.arange(0, BH)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dj = rd[:, None] * HD + rj[None, :]  # [D, BH] tile of a [D, HD] matrix
    jd = rj[:, None] * D + rd[None, :]  # [BH, D] tile of a [HD, D] matrix
    DH = D * HD
    for c in range(NC):
        tok = pid * TP * D + c * N * D
        q = tl.load(Q + tok + nd).to(tl.float32)
        k = tl.load(K + tok + nd).to(tl.float32)
        v = tl.load(V + tok + nd).to(tl.float32)
        g = pid * NC + c
        a = tl.load(AV + g * N + rn)
        cc = tl.load(CV + g * N + rn)
        gm = tl.load(GM + g * N * N + nn)
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DH
        s_out = s_in + DH
        # Keys forward through the chunk-start memory: layer-2 output, then its residual.
        z1 = tl.zeros([N, D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            x1 = _act(_dot(k, tl.load(W1 + s_in + j0 + dj), PREC), ACT)
            z1 += _dot(x1, tl.load(W2 + s_in + j0 * D + jd), PREC)
        d2 = z1 - v
        gd2 = gn[:, None] * d2
        sd2 = sn[:, None] * d2
        m0 = gm * _dot(q, tl.trans(k), PREC)
        kt = tl.trans(k)
        y = tl.zeros([N, D], dtype=tl.float32)
        p1 = tl.zeros([N, N], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            s1 = tl.load(S1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            s2 = tl.load(S2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            d1 = _dot(d2, tl.trans(w2), PREC) * _act_d(z0, ACT)
            o0 = a[:, None] * _dot(q, w1, PREC) + cc[:, None] * _dot(q, s1, PREC) - _dot(m0, d1, PREC)
            h1 = _act(o0, ACT)
            y += a[:, None] * _dot(h1, w2, PREC) + cc[:, None] * _dot(h1, s2, PREC)
            p1 += _dot(h1, tl.trans(x1), PREC)
            tl.store(W1 + s_out + j0 + dj, a_n * w1 + c_n * s1 - _dot(kt, gn[:, None] * d1, PREC))
            tl.store(S1 + s_out + j0 + dj, e_n * s1 - _dot(kt, sn[:, None] * d1, PREC))
            x1t = tl.trans(x1)
            tl.store(W2 + s_out + j0 * D + jd, a_n * w2 + c_n * s2 - _dot(x1t, gd2, PREC))
            tl.store(S2 + s_out + j0 * D + jd, e_n * s2 - _dot(x1t, sd2, PREC))
        y -= _dot(gm * p1, d2, PREC)
        tl.store(Y + tok + nd, y)
        tl.debug_barrier()


@triton.jit
def bwd2_kernel(Q, K, V, DY, AV, CV, GM, ENDS, GN, SN, W1, S1, W2, S2, DW1, DS1, DW2, DS2,
                DQ, DK, DV, DAV, DCV, DGM, DENDS, DGN, DSN, SX, SZ, NC, TP, BHN,
                N: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, BH: tl.constexpr,
                ACT: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    rj = tl.arange(0, BH)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dj = rd[:, None] * HD + rj[None, :]
    jd = rj[:, None] * D + rd[None, :]
    nj = rn[:, None] * HD + rj[None, :]  # [N, BH] tile of the [N, HD] scratch
    DH = D * HD
    scratch = pid * N * HD
    for i in range(NC):
        c = NC - 1 - i
        d_in = ((c + 1) % 2 * BHN + pid) * DH
        d_out = ((c % 2) * BHN + pid) * DH
        tok = pid * TP * D + c * N * D
        q = tl.load(Q + tok + nd).to(tl.float32)
        k = tl.load(K + tok + nd).to(tl.float32)
        v = tl.load(V + tok + nd).to(tl.float32)
        dy = tl.load(DY + tok + nd).to(tl.float32)
        g = pid * NC + c
        a = tl.load(AV + g * N + rn)
        cc = tl.load(CV + g * N + rn)
        gm = tl.load(GM + g * N * N + nn)
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DH
        # Recompute the keys forward and the layer-2 residual.
        z1 = tl.zeros([N, D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            x1 = _act(_dot(k, tl.load(W1 + s_in + j0 + dj), PREC), ACT)
            z1 += _dot(x1, tl.load(W2 + s_in + j0 * D + jd), PREC)
        d2 = z1 - v
        qk = _dot(q, tl.trans(k), PREC)
        m0 = gm * qk
        # Recompute the query pass's reductions over the hidden width.
        p1 = tl.zeros([N, N], dtype=tl.float32)
        hw2 = tl.zeros([N, D], dtype=tl.float32)
        hs2 = tl.zeros([N, D], dtype=tl.float32)
        xdw2 = tl.zeros([N, D], dtype=tl.float32)
        xds2 = tl.zeros([N, D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            s1 = tl.load(S1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            s2 = tl.load(S2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            d1 = _dot(d2, tl.trans(w2), PREC) * _act_d(z0, ACT)
            o0 = a[:, None] * _dot(q, w1, PREC) + cc[:, None] * _dot(q, s1, PREC) - _dot(m0, d1, PREC)
            h1 = _act(o0, ACT)
            p1 += _dot(h1, tl.trans(x1), PREC)
            hw2 += _dot(h1, w2, PREC)
            hs2 += _dot(h1, s2, PREC)
            xdw2 += _dot(x1, tl.load(DW2 + d_in + j0 * D + jd), PREC)
            xds2 += _dot(x1, tl.load(DS2 + d_in + j0 * D + jd), PREC)
        # Layer 2 of the query pass and of the end state.
        da = tl.sum(dy * hw2, 1)
        dc = tl.sum(dy * hs2, 1)
        dm1 = -_dot(dy, tl.trans(d2), PREC)
        dgm = dm1 * p1
        dp1 = gm * dm1
        dd2 = -_dot(tl.trans(gm * p1), dy, PREC) - gn[:, None] * xdw2 - sn[:, None] * xds2
        dgn = -tl.sum(d2 * xdw2, 1)
        dsn = -tl.sum(d2 * xds2, 1)
        gd2 = gn[:, None] * d2
        sd2 = sn[:, None] * d2
        ady = a[:, None] * dy
        cdy = cc[:, None] * dy
        qt = tl.trans(q)
        dq = tl.zeros([N, D], dtype=tl.float32)
        dk = tl.zeros([N, D], dtype=tl.float32)
        dm0 = tl.zeros([N, N], dtype=tl.float32)
        va = tl.zeros([D], dtype=tl.float32)
        vc = tl.zeros([D], dtype=tl.float32)
        ve = tl.zeros([D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            s1 = tl.load(S1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            s2 = tl.load(S2 + s_in + j0 * D + jd)
            dw1e = tl.load(DW1 + d_in + j0 + dj)
            ds1e = tl.load(DS1 + d_in + j0 + dj)
            dw2e = tl.load(DW2 + d_in + j0 * D + jd)
            ds2e = tl.load(DS2 + d_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            ad = _act_d(z0, ACT)
            u0 = _dot(d2, tl.trans(w2), PREC)
            d1 = u0 * ad
            qw1 = _dot(q, w1, PREC)
            qs1 = _dot(q, s1, PREC)
            o0 = a[:, None] * qw1 + cc[:, None] * qs1 - _dot(m0, d1, PREC)
            h1 = _act(o0, ACT)
            # Layer-2 weights: query pass and end state.
            h1t = tl.trans(h1)
            dw2 = a_n * dw2e + _dot(h1t, ady, PREC)
            ds2 = c_n * dw2e + e_n * ds2e + _dot(h1t, cdy, PREC)
            va += tl.sum(dw2e * w2, 0)
            vc += tl.sum(dw2e * s2, 0)
            ve += tl.sum(ds2e * s2, 0)
            dh1 = _dot(ady, tl.trans(w2), PREC) + _dot(cdy, tl.trans(s2), PREC) + _dot(dp1, x1, PREC)
            dx1 = (_dot(tl.trans(dp1), h1, PREC) - _dot(gd2, tl.trans(dw2e), PREC)
                   - _dot(sd2, tl.trans(ds2e), PREC))
            do0 = dh1 * _act_d(o0, ACT)
            # Layer 1 of the query pass.
            da += tl.sum(do0 * qw1, 1)
            dc += tl.sum(do0 * qs1, 1)
            ado0 = a[:, None] * do0
            cdo0 = cc[:, None] * do0
            dw1 = a_n * dw1e + _dot(qt, ado0, PREC)
            ds1 = c_n * dw1e + e_n * ds1e + _dot(qt, cdo0, PREC)
            va += tl.sum(dw1e * w1, 1)
            vc += tl.sum(dw1e * s1, 1)
            ve += tl.sum(ds1e * s1, 1)
            dq += _dot(ado0, tl.trans(w1), PREC) + _dot(cdo0, tl.trans(s1), PREC)
            dm0 -= _dot(do0, tl.trans(d1), PREC)
            # Layer-1 end state.
            kdw1 = _dot(k, dw1e, PREC)
            kds1 = _dot(k, ds1e, PREC)
            dd1 = -_dot(tl.trans(m0), do0, PREC) - gn[:, None] * kdw1 - sn[:, None] * kds1
            dgn -= tl.sum(d1 * kdw1, 1)
            dsn -= tl.sum(d1 * kds1, 1)
            dk -= (_dot(gn[:, None] * d1, tl.trans(dw1e), PREC)
                   + _dot(sn[:, None] * d1, tl.trans(ds1e), PREC))
            # Delta chain: d1 = (d2 W2ᵀ) ⊙ σ'(z0).
            du0 = dd1 * ad
            dz0 = dd1 * u0 * _act_dd(z0, ACT)
            dd2 += _dot(du0, w2, PREC)
            dw2 += _dot(tl.trans(du0), d2, PREC)
            tl.store(DW1 + d_out + j0 + dj, dw1)
            tl.store(DS1 + d_out + j0 + dj, ds1)
            tl.store(DW2 + d_out + j0 * D + jd, dw2)
            tl.store(DS2 + d_out + j0 * D + jd, ds2)
            tl.store(SX + scratch + j0 + nj, dx1)
            tl.store(SZ + scratch + j0 + nj, dz0)
        dgm += dm0 * qk
        dqk = gm * dm0
        dq += _dot(dqk, k, PREC)
        dk += _dot(tl.trans(dqk), q, PREC)
        tl.debug_barrier()
        # Keys forward: d2 = σ(k W1) W2 - v.
        kt = tl.trans(k)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            dx1 = tl.load(SX + scratch + j0 + nj) + _dot(dd2, tl.trans(w2), PREC)
            dz0 = tl.load(SZ + scratch + j0 + nj) + dx1 * _act_d(z0, ACT)
            dk += _dot(dz0, tl.trans(w1), PREC)
            dw2 = tl.load(DW2 + d_out + j0 * D + jd) + _dot(tl.trans(x1), dd2, PREC)
            dw1 = tl.load(DW1 + d_out + j0 + dj) + _dot(kt, dz0, PREC)
            tl.store(DW2 + d_out + j0 * D + jd, dw2)
            tl.store(DW1 + d_out + j0 + dj, dw1)
        tl.store(DQ + tok + nd, dq)
        tl.store(DK + tok + nd, dk)
        tl.store(DV + tok + nd, -dd2)
        tl.store(DAV + g * N + rn, da)
        tl.store(DCV + g * N + rn, dc)
        tl.store(DGM + g * N * N + nn, dgm)
        tl.store(DENDS + g * 4, tl.sum(va, 0))
        tl.store(DENDS + g * 4 + 1, tl.sum(vc, 0))
        tl.store(DENDS + g * 4 + 2, tl.sum(ve, 0))
        tl.store(DGN + g * N + rn, dgn)
        tl.store(DSN + g * N + rn, dsn)
        tl.debug_barrier()


@triton.jit
def bwd2r_kernel(Q, K, V, DY, AV, CV, GM, ENDS, GN, SN, W1, S1, W2, S2, DW1, DS1, DW2, DS2,
                 DQ, DK, DV, DAV, DCV, DGM, DENDS, DGN, DSN, SX, SZ, SG, NC, TP, BHN,
                 N: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, BH: tl.constexpr,
                 ACT: tl.constexpr, PREC: tl.constexpr):
    """``bwd2_kernel`` with a smaller live set (V4): the token tiles (q, k, dy) and the N×N
    matrices M0 = G⊙qkᵀ and dP1 are re-read inside the hidden-tile loop (L1/L2) instead of being
    held in registers across it, the gate-scaled tiles (A⊙dy, g⊙d2, ...) are re-formed where
    they are used, and the dG partial of layer 2 is parked in DGM. Same algebra, same outputs.
    SG: ``[BHN, 2, N, N]`` fp32 scratch (M0, dP1)."""
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    rj = tl.arange(0, BH)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dj = rd[:, None] * HD + rj[None, :]
    jd = rj[:, None] * D + rd[None, :]
    nj = rn[:, None] * HD + rj[None, :]
    DH = D * HD
    scratch = pid * N * HD
    sg = pid * 2 * N * N
    for i in range(NC):
        c = NC - 1 - i
        d_in = ((c + 1) % 2 * BHN + pid) * DH
        d_out = ((c % 2) * BHN + pid) * DH
        tok = pid * TP * D + c * N * D
        g = pid * NC + c
        a = tl.load(AV + g * N + rn)
        cc = tl.load(CV + g * N + rn)
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DH
        # Pass 1: recompute the keys forward, the layer-2 residual and the query pass's reductions.
        k = tl.load(K + tok + nd).to(tl.float32)
        z1 = tl.zeros([N, D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            x1 = _act(_dot(k, tl.load(W1 + s_in + j0 + dj), PREC), ACT)
            z1 += _dot(x1, tl.load(W2 + s_in + j0 * D + jd), PREC)
        d2 = z1 - tl.load(V + tok + nd).to(tl.float32)
        q = tl.load(Q + tok + nd).to(tl.float32)
        m0 = tl.load(GM + g * N * N + nn) * _dot(q, tl.trans(k), PREC)
        tl.store(SG + sg + nn, m0)
        p1 = tl.zeros([N, N], dtype=tl.float32)
        hw2 = tl.zeros([N, D], dtype=tl.float32)
        hs2 = tl.zeros([N, D], dtype=tl.float32)
        xdw2 = tl.zeros([N, D], dtype=tl.float32)
        xds2 = tl.zeros([N, D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            d1 = _dot(d2, tl.trans(tl.load(W2 + s_in + j0 * D + jd)), PREC) * _act_d(z0, ACT)
            o0 = (a[:, None] * _dot(q, w1, PREC) + cc[:, None] * _dot(q, tl.load(S1 + s_in + j0 + dj), PREC)
                  - _dot(m0, d1, PREC))
            h1 = _act(o0, ACT)
            p1 += _dot(h1, tl.trans(x1), PREC)
            hw2 += _dot(h1, tl.load(W2 + s_in + j0 * D + jd), PREC)
            hs2 += _dot(h1, tl.load(S2 + s_in + j0 * D + jd), PREC)
            xdw2 += _dot(x1, tl.load(DW2 + d_in + j0 * D + jd), PREC)
            xds2 += _dot(x1, tl.load(DS2 + d_in + j0 * D + jd), PREC)
        # Layer 2 of the query pass and of the end state.
        dy = tl.load(DY + tok + nd)
        da = tl.sum(dy * hw2, 1)
        dc = tl.sum(dy * hs2, 1)
        gm = tl.load(GM + g * N * N + nn)
        dm1 = -_dot(dy, tl.trans(d2), PREC)
        tl.store(DGM + g * N * N + nn, dm1 * p1)
        tl.store(SG + sg + N * N + nn, gm * dm1)
        dd2 = -_dot(tl.trans(gm * p1), dy, PREC) - gn[:, None] * xdw2 - sn[:, None] * xds2
        dgn = -tl.sum(d2 * xdw2, 1)
        dsn = -tl.sum(d2 * xds2, 1)
        dq = tl.zeros([N, D], dtype=tl.float32)
        dk = tl.zeros([N, D], dtype=tl.float32)
        dm0 = tl.zeros([N, N], dtype=tl.float32)
        va = tl.zeros([D], dtype=tl.float32)
        vc = tl.zeros([D], dtype=tl.float32)
        ve = tl.zeros([D], dtype=tl.float32)
        tl.debug_barrier()
        # Pass 2: everything per hidden tile; token tiles and M0, dP1 re-read from L1/L2.
        for j0 in range(0, HD, BH):
            k = tl.load(K + tok + nd).to(tl.float32)
            w1 = tl.load(W1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            ad = _act_d(z0, ACT)
            u0 = _dot(d2, tl.trans(w2), PREC)
            d1 = u0 * ad
            q = tl.load(Q + tok + nd).to(tl.float32)
            s1 = tl.load(S1 + s_in + j0 + dj)
            qw1 = _dot(q, w1, PREC)
            qs1 = _dot(q, s1, PREC)
            o0 = a[:, None] * qw1 + cc[:, None] * qs1 - _dot(tl.load(SG + sg + nn), d1, PREC)
            h1 = _act(o0, ACT)
            # Layer-2 weights: query pass and end state.
            dy = tl.load(DY + tok + nd)
            s2 = tl.load(S2 + s_in + j0 * D + jd)
            dw2e = tl.load(DW2 + d_in + j0 * D + jd)
            ds2e = tl.load(DS2 + d_in + j0 * D + jd)
            h1t = tl.trans(h1)
            dw2 = a_n * dw2e + _dot(h1t, a[:, None] * dy, PREC)
            ds2 = c_n * dw2e + e_n * ds2e + _dot(h1t, cc[:, None] * dy, PREC)
            va += tl.sum(dw2e * w2, 0)
            vc += tl.sum(dw2e * s2, 0)
            ve += tl.sum(ds2e * s2, 0)
            x1 = _act(z0, ACT)
            dp1 = tl.load(SG + sg + N * N + nn)
            dh1 = (_dot(a[:, None] * dy, tl.trans(w2), PREC) + _dot(cc[:, None] * dy, tl.trans(s2), PREC)
                   + _dot(dp1, x1, PREC))
            dx1 = (_dot(tl.trans(dp1), h1, PREC) - _dot(gn[:, None] * d2, tl.trans(dw2e), PREC)
                   - _dot(sn[:, None] * d2, tl.trans(ds2e), PREC))
            tl.store(SX + scratch + j0 + nj, dx1)
            do0 = dh1 * _act_d(o0, ACT)
            # Layer 1 of the query pass.
            da += tl.sum(do0 * qw1, 1)
            dc += tl.sum(do0 * qs1, 1)
            ado0 = a[:, None] * do0
            cdo0 = cc[:, None] * do0
            dw1e = tl.load(DW1 + d_in + j0 + dj)
            ds1e = tl.load(DS1 + d_in + j0 + dj)
            qt = tl.trans(q)
            tl.store(DW1 + d_out + j0 + dj, a_n * dw1e + _dot(qt, ado0, PREC))
            tl.store(DS1 + d_out + j0 + dj, c_n * dw1e + e_n * ds1e + _dot(qt, cdo0, PREC))
            va += tl.sum(dw1e * w1, 1)
            vc += tl.sum(dw1e * s1, 1)
            ve += tl.sum(ds1e * s1, 1)
            dq += _dot(ado0, tl.trans(w1), PREC) + _dot(cdo0, tl.trans(s1), PREC)
            dm0 -= _dot(do0, tl.trans(d1), PREC)
            # Layer-1 end state.
            kdw1 = _dot(k, dw1e, PREC)
            kds1 = _dot(k, ds1e, PREC)
            dd1 = (-_dot(tl.trans(tl.load(SG + sg + nn)), do0, PREC) - gn[:, None] * kdw1
                   - sn[:, None] * kds1)
            dgn -= tl.sum(d1 * kdw1, 1)
            dsn -= tl.sum(d1 * kds1, 1)
            dk -= (_dot(gn[:, None] * d1, tl.trans(dw1e), PREC)
                   + _dot(sn[:, None] * d1, tl.trans(ds1e), PREC))
            # Delta chain: d1 = (d2 W2ᵀ) ⊙ σ'(z0).
            du0 = dd1 * ad
            tl.store(SZ + scratch + j0 + nj, dd1 * u0 * _act_dd(z0, ACT))
            dd2 += _dot(du0, w2, PREC)
            tl.store(DW2 + d_out + j0 * D + jd, dw2 + _dot(tl.trans(du0), d2, PREC))
            tl.store(DS2 + d_out + j0 * D + jd, ds2)
        tl.debug_barrier()
        q = tl.load(Q + tok + nd).to(tl.float32)
        k = tl.load(K + tok + nd).to(tl.float32)
        gm = tl.load(GM + g * N * N + nn)
        tl.store(DGM + g * N * N + nn, tl.load(DGM + g * N * N + nn) + dm0 * _dot(q, tl.trans(k), PREC))
        dqk = gm * dm0
        dq += _dot(dqk, k, PREC)
        dk += _dot(tl.trans(dqk), q, PREC)
        tl.store(DQ + tok + nd, dq)
        # Pass 3, keys forward: d2 = σ(k W1) W2 - v.
        kt = tl.trans(k)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            dx1 = tl.load(SX + scratch + j0 + nj) + _dot(dd2, tl.trans(w2), PREC)
            dz0 = tl.load(SZ + scratch + j0 + nj) + dx1 * _act_d(z0, ACT)
            dk += _dot(dz0, tl.trans(w1), PREC)
            dw2 = tl.load(DW2 + d_out + j0 * D + jd) + _dot(tl.trans(x1), dd2, PREC)
            dw1 = tl.load(DW1 + d_out + j0 + dj) + _dot(kt, dz0, PREC)
            tl.store(DW2 + d_out + j0 * D + jd, dw2)
            tl.store(DW1 + d_out + j0 + dj, dw1)
        tl.store(DK + tok + nd, dk)
        tl.store(DV + tok + nd, -dd2)
        tl.store(DAV + g * N + rn, da)
        tl.store(DCV + g * N + rn, dc)
        tl.store(DENDS + g * 4, tl.sum(va, 0))
        tl.store(DENDS + g * 4 + 1, tl.sum(vc, 0))
        tl.store(DENDS + g * 4 + 2, tl.sum(ve, 0))
        tl.store(DGN + g * N + rn, dgn)
        tl.store(DSN + g * N + rn, dsn)
        tl.debug_barrier()


@triton.jit
def bwd2s_kernel(Q, K, V, DY, AV, CV, GM, ENDS, GN, SN, W1, S1, W2, S2, DW1, DS1, DW2, DS2,
                 DQ, DK, DV, DAV, DCV, DGM, DENDS, DGN, DSN, SX, SZ, SG, SD, NC, TP, BHN,
                 N: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, BH: tl.constexpr,
                 ACT: tl.constexpr, PREC: tl.constexpr):
    """``bwd2r_kernel`` with its main pass split in two passes over the hidden tiles (V5): 2a
    (layer 2 of the query pass and of the end state, up to the query pass's layer-1 cotangent
    do0, parked in SD ``[BHN, N, HD]``) and 2b (layer 1 and the delta chain), each with about
    half the live tiles; z0, u0 and the query pass are recomputed in 2b (+2 products per tile)."""
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    rj = tl.arange(0, BH)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dj = rd[:, None] * HD + rj[None, :]
    jd = rj[:, None] * D + rd[None, :]
    nj = rn[:, None] * HD + rj[None, :]
    DH = D * HD
    scratch = pid * N * HD
    sg = pid * 2 * N * N
    for i in range(NC):
        c = NC - 1 - i
        d_in = ((c + 1) % 2 * BHN + pid) * DH
        d_out = ((c % 2) * BHN + pid) * DH
        tok = pid * TP * D + c * N * D
        g = pid * NC + c
        a = tl.load(AV + g * N + rn)
        cc = tl.load(CV + g * N + rn)
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DH
        # Pass 1: recompute the keys forward, the layer-2 residual and the query pass's reductions.
        k = tl.load(K + tok + nd).to(tl.float32)
        z1 = tl.zeros([N, D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            x1 = _act(_dot(k, tl.load(W1 + s_in + j0 + dj), PREC), ACT)
            z1 += _dot(x1, tl.load(W2 + s_in + j0 * D + jd), PREC)
        d2 = z1 - tl.load(V + tok + nd).to(tl.float32)
        q = tl.load(Q + tok + nd).to(tl.float32)
        m0 = tl.load(GM + g * N * N + nn) * _dot(q, tl.trans(k), PREC)
        tl.store(SG + sg + nn, m0)
        p1 = tl.zeros([N, N], dtype=tl.float32)
        hw2 = tl.zeros([N, D], dtype=tl.float32)
        hs2 = tl.zeros([N, D], dtype=tl.float32)
        xdw2 = tl.zeros([N, D], dtype=tl.float32)
        xds2 = tl.zeros([N, D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            d1 = _dot(d2, tl.trans(tl.load(W2 + s_in + j0 * D + jd)), PREC) * _act_d(z0, ACT)
            o0 = (a[:, None] * _dot(q, w1, PREC) + cc[:, None] * _dot(q, tl.load(S1 + s_in + j0 + dj), PREC)
                  - _dot(m0, d1, PREC))
            h1 = _act(o0, ACT)
            p1 += _dot(h1, tl.trans(x1), PREC)
            hw2 += _dot(h1, tl.load(W2 + s_in + j0 * D + jd), PREC)
            hs2 += _dot(h1, tl.load(S2 + s_in + j0 * D + jd), PREC)
            xdw2 += _dot(x1, tl.load(DW2 + d_in + j0 * D + jd), PREC)
            xds2 += _dot(x1, tl.load(DS2 + d_in + j0 * D + jd), PREC)
        # Layer 2 of the query pass and of the end state.
        dy = tl.load(DY + tok + nd)
        da = tl.sum(dy * hw2, 1)
        dc = tl.sum(dy * hs2, 1)
        gm = tl.load(GM + g * N * N + nn)
        dm1 = -_dot(dy, tl.trans(d2), PREC)
        tl.store(DGM + g * N * N + nn, dm1 * p1)
        tl.store(SG + sg + N * N + nn, gm * dm1)
        dd2 = -_dot(tl.trans(gm * p1), dy, PREC) - gn[:, None] * xdw2 - sn[:, None] * xds2
        dgn = -tl.sum(d2 * xdw2, 1)
        dsn = -tl.sum(d2 * xds2, 1)
        dq = tl.zeros([N, D], dtype=tl.float32)
        dk = tl.zeros([N, D], dtype=tl.float32)
        dm0 = tl.zeros([N, N], dtype=tl.float32)
        va = tl.zeros([D], dtype=tl.float32)
        vc = tl.zeros([D], dtype=tl.float32)
        ve = tl.zeros([D], dtype=tl.float32)
        tl.debug_barrier()
        # Pass 2a: layer 2 (query pass and end state) and the layer-1 cotangent of the query pass.
        for j0 in range(0, HD, BH):
            k = tl.load(K + tok + nd).to(tl.float32)
            w1 = tl.load(W1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            d1 = _dot(d2, tl.trans(w2), PREC) * _act_d(z0, ACT)
            q = tl.load(Q + tok + nd).to(tl.float32)
            s1 = tl.load(S1 + s_in + j0 + dj)
            qw1 = _dot(q, w1, PREC)
            qs1 = _dot(q, s1, PREC)
            o0 = a[:, None] * qw1 + cc[:, None] * qs1 - _dot(tl.load(SG + sg + nn), d1, PREC)
            h1 = _act(o0, ACT)
            dy = tl.load(DY + tok + nd)
            s2 = tl.load(S2 + s_in + j0 * D + jd)
            dw2e = tl.load(DW2 + d_in + j0 * D + jd)
            ds2e = tl.load(DS2 + d_in + j0 * D + jd)
            h1t = tl.trans(h1)
            tl.store(DW2 + d_out + j0 * D + jd, a_n * dw2e + _dot(h1t, a[:, None] * dy, PREC))
            tl.store(DS2 + d_out + j0 * D + jd, c_n * dw2e + e_n * ds2e + _dot(h1t, cc[:, None] * dy, PREC))
            va += tl.sum(dw2e * w2, 0)
            vc += tl.sum(dw2e * s2, 0)
            ve += tl.sum(ds2e * s2, 0)
            x1 = _act(z0, ACT)
            dp1 = tl.load(SG + sg + N * N + nn)
            dh1 = (_dot(a[:, None] * dy, tl.trans(w2), PREC) + _dot(cc[:, None] * dy, tl.trans(s2), PREC)
                   + _dot(dp1, x1, PREC))
            dx1 = (_dot(tl.trans(dp1), h1, PREC) - _dot(gn[:, None] * d2, tl.trans(dw2e), PREC)
                   - _dot(sn[:, None] * d2, tl.trans(ds2e), PREC))
            tl.store(SX + scratch + j0 + nj, dx1)
            do0 = dh1 * _act_d(o0, ACT)
            da += tl.sum(do0 * qw1, 1)
            dc += tl.sum(do0 * qs1, 1)
            tl.store(SD + scratch + j0 + nj, do0)
        tl.debug_barrier()
        # Pass 2b: layer 1 of the query pass and of the end state, and the delta chain.
        for j0 in range(0, HD, BH):
            k = tl.load(K + tok + nd).to(tl.float32)
            w1 = tl.load(W1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            ad = _act_d(z0, ACT)
            u0 = _dot(d2, tl.trans(w2), PREC)
            d1 = u0 * ad
            do0 = tl.load(SD + scratch + j0 + nj)
            ado0 = a[:, None] * do0
            cdo0 = cc[:, None] * do0
            s1 = tl.load(S1 + s_in + j0 + dj)
            dw1e = tl.load(DW1 + d_in + j0 + dj)
            ds1e = tl.load(DS1 + d_in + j0 + dj)
            qt = tl.trans(tl.load(Q + tok + nd).to(tl.float32))
            tl.store(DW1 + d_out + j0 + dj, a_n * dw1e + _dot(qt, ado0, PREC))
            tl.store(DS1 + d_out + j0 + dj, c_n * dw1e + e_n * ds1e + _dot(qt, cdo0, PREC))
            va += tl.sum(dw1e * w1, 1)
            vc += tl.sum(dw1e * s1, 1)
            ve += tl.sum(ds1e * s1, 1)
            dq += _dot(ado0, tl.trans(w1), PREC) + _dot(cdo0, tl.trans(s1), PREC)
            dm0 -= _dot(do0, tl.trans(d1), PREC)
            kdw1 = _dot(k, dw1e, PREC)
            kds1 = _dot(k, ds1e, PREC)
            dd1 = (-_dot(tl.trans(tl.load(SG + sg + nn)), do0, PREC) - gn[:, None] * kdw1
                   - sn[:, None] * kds1)
            dgn -= tl.sum(d1 * kdw1, 1)
            dsn -= tl.sum(d1 * kds1, 1)
            dk -= (_dot(gn[:, None] * d1, tl.trans(dw1e), PREC)
                   + _dot(sn[:, None] * d1, tl.trans(ds1e), PREC))
            du0 = dd1 * ad
            tl.store(SZ + scratch + j0 + nj, dd1 * u0 * _act_dd(z0, ACT))
            dd2 += _dot(du0, w2, PREC)
            dw2 = tl.load(DW2 + d_out + j0 * D + jd) + _dot(tl.trans(du0), d2, PREC)
            tl.store(DW2 + d_out + j0 * D + jd, dw2)
        tl.debug_barrier()
        q = tl.load(Q + tok + nd).to(tl.float32)
        k = tl.load(K + tok + nd).to(tl.float32)
        gm = tl.load(GM + g * N * N + nn)
        tl.store(DGM + g * N * N + nn, tl.load(DGM + g * N * N + nn) + dm0 * _dot(q, tl.trans(k), PREC))
        dqk = gm * dm0
        dq += _dot(dqk, k, PREC)
        dk += _dot(tl.trans(dqk), q, PREC)
        tl.store(DQ + tok + nd, dq)
        # Pass 3, keys forward: d2 = σ(k W1) W2 - v.
        kt = tl.trans(k)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            dx1 = tl.load(SX + scratch + j0 + nj) + _dot(dd2, tl.trans(w2), PREC)
            dz0 = tl.load(SZ + scratch + j0 + nj) + dx1 * _act_d(z0, ACT)
            dk += _dot(dz0, tl.trans(w1), PREC)
            dw2 = tl.load(DW2 + d_out + j0 * D + jd) + _dot(tl.trans(x1), dd2, PREC)
            dw1 = tl.load(DW1 + d_out + j0 + dj) + _dot(kt, dz0, PREC)
            tl.store(DW2 + d_out + j0 * D + jd, dw2)
            tl.store(DW1 + d_out + j0 + dj, dw1)
        tl.store(DK + tok + nd, dk)
        tl.store(DV + tok + nd, -dd2)
        tl.store(DAV + g * N + rn, da)
        tl.store(DCV + g * N + rn, dc)
        tl.store(DENDS + g * 4, tl.sum(va, 0))
        tl.store(DENDS + g * 4 + 1, tl.sum(vc, 0))
        tl.store(DENDS + g * 4 + 2, tl.sum(ve, 0))
        tl.store(DGN + g * N + rn, dgn)
        tl.store(DSN + g * N + rn, dsn)
        tl.debug_barrier()


# ------------------------------------------------------------------- L_M = 2, V6 (split work)
#
# The forward and the backward are each split into a sequential kernel that carries the state
# across chunks (one program per (batch, head)) and a query-pass kernel with one program per
# (batch·head, chunk) that reads the chunk-start state from the snapshots (docs/kernel-notes.md
# "V6"). Everything in the query pass depends only on the chunk-start state, the chunk's tokens
# and the residual d2 = σ(k W1) W2 - v, which the sequential forward saves ([BHN, TP, D]).


@triton.jit
def fwd2_state_kernel(K, V, D2, ENDS, GN, SN, W1, S1, W2, S2, TW1, TW2, NC, TP,
                      N: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, BH: tl.constexpr,
                      ACT: tl.constexpr, PREC: tl.constexpr, HAS_T: tl.constexpr = False):
    """Sequential part of the V6 forward: keys forward through the chunk-start memory, the
    residual d2 (stored to D2 for the query pass and the backward), layer-1 delta d1 and the
    end-of-chunk W and S of both layers (snapshots c + 1). ``HAS_T``: the forget gate decays
    towards the targets TW1, TW2 ``[BHN, d_l, d_l+1]`` (``W' += (1 − A_n) W̄``), else unused."""
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    rj = tl.arange(0, BH)
    nd = rn[:, None] * D + rd[None, :]
    dj = rd[:, None] * HD + rj[None, :]
    jd = rj[:, None] * D + rd[None, :]
    DH = D * HD
    for c in range(NC):
        tok = pid * TP * D + c * N * D
        k = tl.load(K + tok + nd).to(tl.float32)
        g = pid * NC + c
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DH
        s_out = s_in + DH
        z1 = tl.zeros([N, D], dtype=tl.float32)
        for j0 in range(0, HD, BH):
            x1 = _act(_dot(k, tl.load(W1 + s_in + j0 + dj), PREC), ACT)
            z1 += _dot(x1, tl.load(W2 + s_in + j0 * D + jd), PREC)
        d2 = z1 - tl.load(V + tok + nd).to(tl.float32)
        tl.store(D2 + tok + nd, d2)
        kt = tl.trans(k)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            s1 = tl.load(S1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            s2 = tl.load(S2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1t = tl.trans(_act(z0, ACT))
            d1 = _dot(d2, tl.trans(w2), PREC) * _act_d(z0, ACT)
            w1n = a_n * w1 + c_n * s1 - _dot(kt, gn[:, None] * d1, PREC)
            w2n = a_n * w2 + c_n * s2 - _dot(x1t, gn[:, None] * d2, PREC)
            if HAS_T:
                w1n += (1.0 - a_n) * tl.load(TW1 + pid * DH + j0 + dj)
                w2n += (1.0 - a_n) * tl.load(TW2 + pid * DH + j0 * D + jd)
            tl.store(W1 + s_out + j0 + dj, w1n)
            tl.store(S1 + s_out + j0 + dj, e_n * s1 - _dot(kt, sn[:, None] * d1, PREC))
            tl.store(W2 + s_out + j0 * D + jd, w2n)
            tl.store(S2 + s_out + j0 * D + jd, e_n * s2 - _dot(x1t, sn[:, None] * d2, PREC))
        tl.debug_barrier()


@triton.jit
def fwd2_query_kernel(Q, K, D2, Y, AV, CV, GM, W1, S1, W2, S2, TW1, TW2, NC, TP,
                      N: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, BH: tl.constexpr,
                      ACT: tl.constexpr, PREC: tl.constexpr, HAS_T: tl.constexpr = False):
    """Query pass of the V6 forward, one program per (batch·head, chunk): y of the chunk's tokens
    from its start state (snapshot c) and its keys and residual d2 (dual form). ``HAS_T``: each
    layer's per-token weights gain ``(1 − A_t) W̄`` (targets TW1, TW2)."""
    c = tl.program_id(0).to(tl.int64)  # chunk on the first grid axis (up to 2³¹ - 1; the second has 65535)
    pid = tl.program_id(1).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    rj = tl.arange(0, BH)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dj = rd[:, None] * HD + rj[None, :]
    jd = rj[:, None] * D + rd[None, :]
    DH = D * HD
    tok = pid * TP * D + c * N * D
    g = pid * NC + c
    s_in = (pid * (NC + 1) + c) * DH
    q = tl.load(Q + tok + nd).to(tl.float32)
    k = tl.load(K + tok + nd).to(tl.float32)
    d2 = tl.load(D2 + tok + nd)
    a = tl.load(AV + g * N + rn)
    ta = (1.0 - a)[:, None]  # weight of the forget targets (HAS_T only; dead code otherwise)
    cc = tl.load(CV + g * N + rn)
    gm = tl.load(GM + g * N * N + nn)
    m0 = gm * _dot(q, tl.trans(k), PREC)
    y = tl.zeros([N, D], dtype=tl.float32)
    p1 = tl.zeros([N, N], dtype=tl.float32)
    for j0 in range(0, HD, BH):
        w1 = tl.load(W1 + s_in + j0 + dj)
        s1 = tl.load(S1 + s_in + j0 + dj)
        w2 = tl.load(W2 + s_in + j0 * D + jd)
        s2 = tl.load(S2 + s_in + j0 * D + jd)
        z0 = _dot(k, w1, PREC)
        d1 = _dot(d2, tl.trans(w2), PREC) * _act_d(z0, ACT)
        o0 = a[:, None] * _dot(q, w1, PREC) + cc[:, None] * _dot(q, s1, PREC) - _dot(m0, d1, PREC)
        if HAS_T:
            o0 += ta * _dot(q, tl.load(TW1 + pid * DH + j0 + dj), PREC)
        h1 = _act(o0, ACT)
        y += a[:, None] * _dot(h1, w2, PREC) + cc[:, None] * _dot(h1, s2, PREC)
        if HAS_T:
            y += ta * _dot(h1, tl.load(TW2 + pid * DH + j0 * D + jd), PREC)
        p1 += _dot(h1, tl.trans(_act(z0, ACT)), PREC)
    y -= _dot(gm * p1, d2, PREC)
    tl.store(Y + tok + nd, y)


@triton.jit
def bwd2_query_kernel(Q, K, D2, DY, AV, CV, GM, W1, S1, W2, S2,
                      DQ, DK, DV, DAV, DCV, DGM, QW1, QS1, QW2, QS2, DD1, DX1, TW1, TW2, QT1, QT2,
                      NC, TP, N: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, BH: tl.constexpr,
                      ACT: tl.constexpr, PREC: tl.constexpr, HAS_T: tl.constexpr = False):
    """Cotangents of the query pass (V6 backward), one program per (batch·head, chunk), from the
    chunk-start state: complete dq, dA, dc, dG; partial dk (query part) into DK, dd2 (query part,
    sign +) into DV; the query pass's contributions to the start-state cotangent into QW1, QS1,
    QW2, QS2 ``[BHN, NC, ...]``; dd1 and dx1 of the query pass into DD1, DX1 ``[BHN, TP, HD]``.
    The sequential ``bwd2_state_kernel`` adds the end-state terms and the delta chain. ``HAS_T``:
    the targets' terms ``(1 − A) ⊙ (x W̄)`` too, their cotangent partials into QT1, QT2
    ``[BHN, NC, ...]``."""
    c = tl.program_id(0).to(tl.int64)  # chunk on the first grid axis (up to 2³¹ - 1; the second has 65535)
    pid = tl.program_id(1).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    rj = tl.arange(0, BH)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dj = rd[:, None] * HD + rj[None, :]
    jd = rj[:, None] * D + rd[None, :]
    nj = rn[:, None] * HD + rj[None, :]
    DH = D * HD
    tok = pid * TP * D + c * N * D
    tokh = pid * TP * HD + c * N * HD
    g = pid * NC + c
    s_in = (pid * (NC + 1) + c) * DH
    q_out = (pid * NC + c) * DH
    q = tl.load(Q + tok + nd).to(tl.float32)
    k = tl.load(K + tok + nd).to(tl.float32)
    d2 = tl.load(D2 + tok + nd)
    dy = tl.load(DY + tok + nd)
    a = tl.load(AV + g * N + rn)
    ta = (1.0 - a)[:, None]  # weight of the forget targets (HAS_T only; dead code otherwise)
    cc = tl.load(CV + g * N + rn)
    gm = tl.load(GM + g * N * N + nn)
    qk = _dot(q, tl.trans(k), PREC)
    m0 = gm * qk
    dp1 = -gm * _dot(dy, tl.trans(d2), PREC)  # G ⊙ dM1
    da = tl.zeros([N], dtype=tl.float32)
    dc = tl.zeros([N], dtype=tl.float32)
    dq = tl.zeros([N, D], dtype=tl.float32)
    dm0 = tl.zeros([N, N], dtype=tl.float32)
    p1 = tl.zeros([N, N], dtype=tl.float32)
    qt = tl.trans(q)
    for j0 in range(0, HD, BH):
        w1 = tl.load(W1 + s_in + j0 + dj)
        s1 = tl.load(S1 + s_in + j0 + dj)
        w2 = tl.load(W2 + s_in + j0 * D + jd)
        s2 = tl.load(S2 + s_in + j0 * D + jd)
        z0 = _dot(k, w1, PREC)
        x1 = _act(z0, ACT)
        d1 = _dot(d2, tl.trans(w2), PREC) * _act_d(z0, ACT)
        qw1 = _dot(q, w1, PREC)
        qs1 = _dot(q, s1, PREC)
        o0 = a[:, None] * qw1 + cc[:, None] * qs1 - _dot(m0, d1, PREC)
        if HAS_T:
            tw1 = tl.load(TW1 + pid * DH + j0 + dj)
            qt1 = _dot(q, tw1, PREC)
            o0 += ta * qt1
        h1 = _act(o0, ACT)
        p1 += _dot(h1, tl.trans(x1), PREC)
        # Layer 2: y = A⊙(h1 W2) + c⊙(h1 S2) - (G⊙P1) d2.
        dyw2 = _dot(dy, tl.trans(w2), PREC)
        dys2 = _dot(dy, tl.trans(s2), PREC)
        da += tl.sum(dyw2 * h1, 1)
        dc += tl.sum(dys2 * h1, 1)
        h1t = tl.trans(h1)
        tl.store(QW2 + q_out + j0 * D + jd, _dot(h1t, a[:, None] * dy, PREC))
        tl.store(QS2 + q_out + j0 * D + jd, _dot(h1t, cc[:, None] * dy, PREC))
        dh1 = a[:, None] * dyw2 + cc[:, None] * dys2 + _dot(dp1, x1, PREC)
        if HAS_T:  # y += (1 - A)⊙(h1 W̄2)
            dyt2 = _dot(dy, tl.trans(tl.load(TW2 + pid * DH + j0 * D + jd)), PREC)
            da -= tl.sum(dyt2 * h1, 1)
            dh1 += ta * dyt2
            tl.store(QT2 + q_out + j0 * D + jd, _dot(h1t, ta * dy, PREC))
        tl.store(DX1 + tokh + j0 + nj, _dot(tl.trans(dp1), h1, PREC))
        # Layer 1: o0 = A⊙(q W1) + c⊙(q S1) - M0 d1.
        do0 = dh1 * _act_d(o0, ACT)
        da += tl.sum(do0 * qw1, 1)
        dc += tl.sum(do0 * qs1, 1)
        ado0 = a[:, None] * do0
        cdo0 = cc[:, None] * do0
        tl.store(QW1 + q_out + j0 + dj, _dot(qt, ado0, PREC))
        tl.store(QS1 + q_out + j0 + dj, _dot(qt, cdo0, PREC))
        dq += _dot(ado0, tl.trans(w1), PREC) + _dot(cdo0, tl.trans(s1), PREC)
        if HAS_T:  # o0 += (1 - A)⊙(q W̄1)
            da -= tl.sum(do0 * qt1, 1)
            tdo0 = ta * do0
            tl.store(QT1 + q_out + j0 + dj, _dot(qt, tdo0, PREC))
            dq += _dot(tdo0, tl.trans(tw1), PREC)
        dm0 -= _dot(do0, tl.trans(d1), PREC)
        tl.store(DD1 + tokh + j0 + nj, -_dot(tl.trans(m0), do0, PREC))
    # dG = dM1 ⊙ P1 + dM0 ⊙ qkᵀ (dM1 = -dy d2ᵀ recomputed rather than held across the loop).
    tl.store(DGM + g * N * N + nn, -_dot(dy, tl.trans(d2), PREC) * p1 + dm0 * qk)
    tl.store(DV + tok + nd, -_dot(tl.trans(gm * p1), dy, PREC))
    dqk = gm * dm0
    tl.store(DQ + tok + nd, dq + _dot(dqk, k, PREC))
    tl.store(DK + tok + nd, _dot(tl.trans(dqk), q, PREC))
    tl.store(DAV + g * N + rn, da)
    tl.store(DCV + g * N + rn, dc)


@triton.jit
def bwd2_state_kernel(K, D2, ENDS, GN, SN, W1, S1, W2, S2, DW1, DS1, DW2, DS2,
                      QW1, QS1, QW2, QS2, DD1, DX1, DK, DV, DENDS, DGN, DSN,
                      TW1, TW2, QT1, QT2, DT1, DT2, NC, TP, BHN,
                      N: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, BH: tl.constexpr,
                      ACT: tl.constexpr, PREC: tl.constexpr, HAS_T: tl.constexpr = False):
    """Sequential part of the V6 backward (reverse chunk loop): the end-state terms and the delta
    chain, added to the query-pass partials of ``bwd2_query_kernel``. Per chunk, pass 1 walks the
    hidden tiles once (end-state cotangents of both layers, dd1 complete, its chain into dd2, the
    new start-state cotangent without the keys-forward terms); pass 2 the keys forward
    (d2 = σ(k W1) W2 - v) once dd2 is complete. DX1 and DD1 hold the query pass's dx1 and dd1
    and are overwritten in place with the pass-1 partials of dx1 and dz0. ``HAS_T``: the end
    state's ``(1 − A_n) W̄`` term; the targets' cotangents ``Σ_c (1 − A_n) dW' + QT[c]`` are
    accumulated into DT1, DT2 ``[BHN, ...]`` (zero on entry)."""
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    rj = tl.arange(0, BH)
    nd = rn[:, None] * D + rd[None, :]
    dj = rd[:, None] * HD + rj[None, :]
    jd = rj[:, None] * D + rd[None, :]
    nj = rn[:, None] * HD + rj[None, :]
    DH = D * HD
    for i in range(NC):
        c = NC - 1 - i
        d_in = ((c + 1) % 2 * BHN + pid) * DH
        d_out = ((c % 2) * BHN + pid) * DH
        tok = pid * TP * D + c * N * D
        tokh = pid * TP * HD + c * N * HD
        g = pid * NC + c
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DH
        q_in = (pid * NC + c) * DH
        k = tl.load(K + tok + nd).to(tl.float32)
        d2 = tl.load(D2 + tok + nd)
        dd2 = tl.load(DV + tok + nd)  # the query part, stored by bwd2_query_kernel
        dk = tl.load(DK + tok + nd)
        dgn = tl.zeros([N], dtype=tl.float32)
        dsn = tl.zeros([N], dtype=tl.float32)
        va = tl.zeros([D], dtype=tl.float32)
        vc = tl.zeros([D], dtype=tl.float32)
        ve = tl.zeros([D], dtype=tl.float32)
        tl.debug_barrier()
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            dw1e = tl.load(DW1 + d_in + j0 + dj)
            ds1e = tl.load(DS1 + d_in + j0 + dj)
            dw2e = tl.load(DW2 + d_in + j0 * D + jd)
            ds2e = tl.load(DS2 + d_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            ad = _act_d(z0, ACT)
            u0 = _dot(d2, tl.trans(w2), PREC)
            d1 = u0 * ad
            # Layer-2 end state: W2' = A_n W2 + c_n S2 - x1ᵀ(g⊙d2), S2' = E_n S2 - x1ᵀ(s⊙d2).
            xdw2 = _dot(x1, dw2e, PREC)
            xds2 = _dot(x1, ds2e, PREC)
            dd2 -= gn[:, None] * xdw2 + sn[:, None] * xds2
            dgn -= tl.sum(d2 * xdw2, 1)
            dsn -= tl.sum(d2 * xds2, 1)
            dx1 = (tl.load(DX1 + tokh + j0 + nj) - _dot(gn[:, None] * d2, tl.trans(dw2e), PREC)
                   - _dot(sn[:, None] * d2, tl.trans(ds2e), PREC))
            tl.store(DX1 + tokh + j0 + nj, dx1)
            s2 = tl.load(S2 + s_in + j0 * D + jd)
            va += tl.sum(dw2e * w2, 0)
            if HAS_T:  # W2' gains (1 - A_n) W̄2
                tw2 = tl.load(TW2 + pid * DH + j0 * D + jd)
                va -= tl.sum(dw2e * tw2, 0)
                dt2 = tl.load(DT2 + pid * DH + j0 * D + jd) + (1.0 - a_n) * dw2e
                tl.store(DT2 + pid * DH + j0 * D + jd, dt2 + tl.load(QT2 + q_in + j0 * D + jd))
            vc += tl.sum(dw2e * s2, 0)
            ve += tl.sum(ds2e * s2, 0)
            tl.store(DS2 + d_out + j0 * D + jd, c_n * dw2e + e_n * ds2e + tl.load(QS2 + q_in + j0 * D + jd))
            # Layer-1 end state.
            kdw1 = _dot(k, dw1e, PREC)
            kds1 = _dot(k, ds1e, PREC)
            dd1 = tl.load(DD1 + tokh + j0 + nj) - gn[:, None] * kdw1 - sn[:, None] * kds1
            dgn -= tl.sum(d1 * kdw1, 1)
            dsn -= tl.sum(d1 * kds1, 1)
            dk -= (_dot(gn[:, None] * d1, tl.trans(dw1e), PREC)
                   + _dot(sn[:, None] * d1, tl.trans(ds1e), PREC))
            s1 = tl.load(S1 + s_in + j0 + dj)
            va += tl.sum(dw1e * w1, 1)
            if HAS_T:  # W1' gains (1 - A_n) W̄1
                tw1 = tl.load(TW1 + pid * DH + j0 + dj)
                va -= tl.sum(dw1e * tw1, 1)
                dt1 = tl.load(DT1 + pid * DH + j0 + dj) + (1.0 - a_n) * dw1e
                tl.store(DT1 + pid * DH + j0 + dj, dt1 + tl.load(QT1 + q_in + j0 + dj))
            vc += tl.sum(dw1e * s1, 1)
            ve += tl.sum(ds1e * s1, 1)
            tl.store(DW1 + d_out + j0 + dj, a_n * dw1e + tl.load(QW1 + q_in + j0 + dj))
            tl.store(DS1 + d_out + j0 + dj, c_n * dw1e + e_n * ds1e + tl.load(QS1 + q_in + j0 + dj))
            # Delta chain: d1 = (d2 W2ᵀ) ⊙ σ'(z0).
            du0 = dd1 * ad
            tl.store(DD1 + tokh + j0 + nj, dd1 * u0 * _act_dd(z0, ACT))
            dd2 += _dot(du0, w2, PREC)
            tl.store(DW2 + d_out + j0 * D + jd,
                     a_n * dw2e + tl.load(QW2 + q_in + j0 * D + jd) + _dot(tl.trans(du0), d2, PREC))
        tl.debug_barrier()
        # Pass 2, keys forward: d2 = σ(k W1) W2 - v.
        kt = tl.trans(k)
        for j0 in range(0, HD, BH):
            w1 = tl.load(W1 + s_in + j0 + dj)
            w2 = tl.load(W2 + s_in + j0 * D + jd)
            z0 = _dot(k, w1, PREC)
            x1 = _act(z0, ACT)
            dx1 = tl.load(DX1 + tokh + j0 + nj) + _dot(dd2, tl.trans(w2), PREC)
            dz0 = tl.load(DD1 + tokh + j0 + nj) + dx1 * _act_d(z0, ACT)
            dk += _dot(dz0, tl.trans(w1), PREC)
            dw2 = tl.load(DW2 + d_out + j0 * D + jd) + _dot(tl.trans(x1), dd2, PREC)
            dw1 = tl.load(DW1 + d_out + j0 + dj) + _dot(kt, dz0, PREC)
            tl.store(DW2 + d_out + j0 * D + jd, dw2)
            tl.store(DW1 + d_out + j0 + dj, dw1)
        tl.store(DK + tok + nd, dk)
        tl.store(DV + tok + nd, -dd2)
        tl.store(DENDS + g * 4, tl.sum(va, 0))
        tl.store(DENDS + g * 4 + 1, tl.sum(vc, 0))
        tl.store(DENDS + g * 4 + 2, tl.sum(ve, 0))
        tl.store(DGN + g * N + rn, dgn)
        tl.store(DSN + g * N + rn, dsn)
        tl.debug_barrier()


# ------------------------------------------------------------------- L_M = 1, V6 (split work)


@triton.jit
def fwd1_state_kernel(K, V, DR, ENDS, GN, SN, W, S, NC, TP,
                      N: tl.constexpr, D: tl.constexpr, PREC: tl.constexpr):
    """Sequential part of the V6 forward at L_M = 1: the residual d = k W - v (stored to DR) and
    the end-of-chunk W and S (snapshot c + 1)."""
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    nd = rn[:, None] * D + rd[None, :]
    dd = rd[:, None] * D + rd[None, :]
    DD = D * D
    for c in range(NC):
        tok = pid * TP * D + c * N * D
        k = tl.load(K + tok + nd).to(tl.float32)
        g = pid * NC + c
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DD
        w = tl.load(W + s_in + dd)
        s = tl.load(S + s_in + dd)
        d = _dot(k, w, PREC) - tl.load(V + tok + nd).to(tl.float32)
        tl.store(DR + tok + nd, d)
        kt = tl.trans(k)
        tl.store(W + s_in + DD + dd, a_n * w + c_n * s - _dot(kt, gn[:, None] * d, PREC))
        tl.store(S + s_in + DD + dd, e_n * s - _dot(kt, sn[:, None] * d, PREC))
        tl.debug_barrier()


@triton.jit
def fwd1_query_kernel(Q, K, DR, Y, AV, CV, GM, W, S, NC, TP,
                      N: tl.constexpr, D: tl.constexpr, PREC: tl.constexpr):
    """Query pass of the V6 forward at L_M = 1, one program per (batch·head, chunk):
    y = A⊙(q W) + c⊙(q S) - (G⊙q kᵀ) d from the chunk-start state."""
    c = tl.program_id(0).to(tl.int64)  # chunk on the first grid axis (up to 2³¹ - 1; the second has 65535)
    pid = tl.program_id(1).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dd = rd[:, None] * D + rd[None, :]
    tok = pid * TP * D + c * N * D
    g = pid * NC + c
    s_in = (pid * (NC + 1) + c) * D * D
    q = tl.load(Q + tok + nd).to(tl.float32)
    k = tl.load(K + tok + nd).to(tl.float32)
    a = tl.load(AV + g * N + rn)
    cc = tl.load(CV + g * N + rn)
    m0 = tl.load(GM + g * N * N + nn) * _dot(q, tl.trans(k), PREC)
    y = (a[:, None] * _dot(q, tl.load(W + s_in + dd), PREC)
         + cc[:, None] * _dot(q, tl.load(S + s_in + dd), PREC) - _dot(m0, tl.load(DR + tok + nd), PREC))
    tl.store(Y + tok + nd, y)


@triton.jit
def bwd1_query_kernel(Q, K, DR, DY, AV, CV, GM, W, S, DQ, DK, DV, DAV, DCV, DGM, QW, QS, NC, TP,
                      N: tl.constexpr, D: tl.constexpr, PREC: tl.constexpr):
    """Cotangents of the query pass at L_M = 1 (V6 backward), one program per (batch·head,
    chunk): complete dq, dA, dc, dG; the query parts of dk (into DK) and dd (into DV, sign +);
    the query pass's contributions to the start-state cotangent into QW, QS ``[BHN, NC, D, D]``."""
    c = tl.program_id(0).to(tl.int64)  # chunk on the first grid axis (up to 2³¹ - 1; the second has 65535)
    pid = tl.program_id(1).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    nd = rn[:, None] * D + rd[None, :]
    nn = rn[:, None] * N + rn[None, :]
    dd = rd[:, None] * D + rd[None, :]
    DD = D * D
    tok = pid * TP * D + c * N * D
    g = pid * NC + c
    s_in = (pid * (NC + 1) + c) * DD
    q_out = (pid * NC + c) * DD
    q = tl.load(Q + tok + nd).to(tl.float32)
    k = tl.load(K + tok + nd).to(tl.float32)
    dy = tl.load(DY + tok + nd)
    a = tl.load(AV + g * N + rn)
    cc = tl.load(CV + g * N + rn)
    gm = tl.load(GM + g * N * N + nn)
    w = tl.load(W + s_in + dd)
    s = tl.load(S + s_in + dd)
    qk = _dot(q, tl.trans(k), PREC)
    tl.store(DAV + g * N + rn, tl.sum(dy * _dot(q, w, PREC), 1))
    tl.store(DCV + g * N + rn, tl.sum(dy * _dot(q, s, PREC), 1))
    ady = a[:, None] * dy
    cdy = cc[:, None] * dy
    qt = tl.trans(q)
    tl.store(QW + q_out + dd, _dot(qt, ady, PREC))
    tl.store(QS + q_out + dd, _dot(qt, cdy, PREC))
    dm0 = -_dot(dy, tl.trans(tl.load(DR + tok + nd)), PREC)
    tl.store(DGM + g * N * N + nn, dm0 * qk)
    tl.store(DV + tok + nd, -_dot(tl.trans(gm * qk), dy, PREC))
    dqk = gm * dm0
    tl.store(DQ + tok + nd, _dot(ady, tl.trans(w), PREC) + _dot(cdy, tl.trans(s), PREC) + _dot(dqk, k, PREC))
    tl.store(DK + tok + nd, _dot(tl.trans(dqk), q, PREC))


@triton.jit
def bwd1_state_kernel(K, DR, ENDS, GN, SN, W, S, DW, DS, QW, QS, DK, DV, DENDS, DGN, DSN, NC, TP, BHN,
                      N: tl.constexpr, D: tl.constexpr, PREC: tl.constexpr):
    """Sequential part of the V6 backward at L_M = 1 (reverse chunk loop): end-state terms and
    the keys forward d = k W - v, added to the query-pass partials of ``bwd1_query_kernel``."""
    pid = tl.program_id(0).to(tl.int64)
    rn = tl.arange(0, N)
    rd = tl.arange(0, D)
    nd = rn[:, None] * D + rd[None, :]
    dd = rd[:, None] * D + rd[None, :]
    DD = D * D
    for i in range(NC):
        c = NC - 1 - i
        d_in = ((c + 1) % 2 * BHN + pid) * DD
        d_out = ((c % 2) * BHN + pid) * DD
        tok = pid * TP * D + c * N * D
        g = pid * NC + c
        a_n = tl.load(ENDS + g * 4)
        c_n = tl.load(ENDS + g * 4 + 1)
        e_n = tl.load(ENDS + g * 4 + 2)
        gn = tl.load(GN + g * N + rn)
        sn = tl.load(SN + g * N + rn)
        s_in = (pid * (NC + 1) + c) * DD
        q_in = (pid * NC + c) * DD
        k = tl.load(K + tok + nd).to(tl.float32)
        d = tl.load(DR + tok + nd)
        w = tl.load(W + s_in + dd)
        s = tl.load(S + s_in + dd)
        dwe = tl.load(DW + d_in + dd)
        dse = tl.load(DS + d_in + dd)
        kdw = _dot(k, dwe, PREC)
        kds = _dot(k, dse, PREC)
        dd_ = tl.load(DV + tok + nd) - gn[:, None] * kdw - sn[:, None] * kds
        tl.store(DGN + g * N + rn, -tl.sum(d * kdw, 1))
        tl.store(DSN + g * N + rn, -tl.sum(d * kds, 1))
        dk = (tl.load(DK + tok + nd) - _dot(gn[:, None] * d, tl.trans(dwe), PREC)
              - _dot(sn[:, None] * d, tl.trans(dse), PREC) + _dot(dd_, tl.trans(w), PREC))
        tl.store(DENDS + g * 4, tl.sum(tl.sum(dwe * w, 1), 0))
        tl.store(DENDS + g * 4 + 1, tl.sum(tl.sum(dwe * s, 1), 0))
        tl.store(DENDS + g * 4 + 2, tl.sum(tl.sum(dse * s, 1), 0))
        tl.store(DW + d_out + dd, a_n * dwe + tl.load(QW + q_in + dd) + _dot(tl.trans(k), dd_, PREC))
        tl.store(DS + d_out + dd, c_n * dwe + e_n * dse + tl.load(QS + q_in + dd))
        tl.store(DK + tok + nd, dk)
        tl.store(DV + tok + nd, -dd_)
        tl.debug_barrier()
