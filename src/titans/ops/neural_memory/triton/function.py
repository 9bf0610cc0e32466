"""Autograd wrapper and host-side preparation for the Triton memory kernels.

The gate coefficients (A, c, G and the end-of-chunk scalars/rows) are formed batched over all
chunks — by PyTorch (``chunk_gates``) or by the fused kernels of ``gate_kernels.py``
(``TITANS_TRITON_GATES``, :func:`gate_backend`) — and enter the memory kernels as inputs: their
gradients come back from the backward kernel and flow to θ, η, α through autograd. Everything
per chunk (keys forward, deltas, query pass, state update, and their backward) runs inside the
memory kernels.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from ..chunked import gate_matrices
from . import kernels as K

LAST_COMPILED: dict[str, object] = {}  # kernel name -> last launched compiled kernel (resource report)
_ACT = {"gelu": K.GELU, "silu": K.SILU, "relu": K.RELU, "identity": K.IDENTITY}
PRECISIONS = ("auto", "bf16", "tf32", "ieee")


def _patch_interpreter() -> None:
    """Triton 3.6's CPU interpreter turns a loop bound passed as a kernel argument into a
    1-element array that NumPy 2 refuses to ``int()``; index it explicitly (interpreter only)."""
    import numpy as np
    import triton.runtime.interpreter as interp

    if getattr(interp, "_titans_patched", False):
        return
    original = interp._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))

    interp._patch_lang_tensor = patched
    interp._titans_patched = True


def precision(dtype: torch.dtype) -> str:
    """Matmul operand precision of the kernels (accumulation is always fp32, the state fp32).

    ``auto`` (default) = ``bf16``: operands rounded to bf16, as cuBLAS does under autocast.
    ``tf32`` / ``ieee`` (exact fp32 products) need about twice the shared memory and fit only
    small tiles (measured on H100: L_M = 1 at D·N ≤ 64·64, L_M = 2 at chunk 16); set them with
    the environment variable ``TITANS_TRITON_PRECISION`` for accuracy checks."""
    p = os.environ.get("TITANS_TRITON_PRECISION", "auto")
    if p not in PRECISIONS:
        raise ValueError(f"TITANS_TRITON_PRECISION must be one of {PRECISIONS}, got {p!r}")
    return "bf16" if p == "auto" else p


HIDDEN_TILES = (64, 32, 16)
HIDDEN_TILE_ENV = "TITANS_TRITON_HIDDEN_TILE"
# 32- and 16-column tiles crash on Hopper at chunk >= 64 (illegal memory access, H200, Triton
# 3.6; their offsets are in bounds: docs/kernel-notes.md, V8). A debugging run may set this.
ALLOW_NARROW_TILES_ON_GPU = False


def hidden_tile(hidden: int) -> int:
    """Columns of the hidden width handled per inner step: ``TITANS_TRITON_HIDDEN_TILE`` when set
    (16, 32 or 64; it must divide ``hidden``), else the largest of 64/32/16 dividing it.

    The static support check admits only hidden widths that are multiples of 64 on the GPU, so
    by default the GPU runs 64-column tiles: a 32-column tile of kernel v2 hit an illegal memory
    access on an H100 (docs/kernel-notes.md, V3). The override exists to measure 32-column tiles
    of the current kernels, whose spills they halve or remove (ptxas report, V8 in the notes);
    the interpreter runs all three and ``bench_kernel.py --resources`` compiles them, but a CUDA
    launch refuses them (:data:`ALLOW_NARROW_TILES_ON_GPU`): on an H200 they hit an illegal
    memory access at chunk ≥ 64 (V8)."""
    forced = os.environ.get(HIDDEN_TILE_ENV, "")
    if forced:
        if forced not in {str(t) for t in HIDDEN_TILES} or hidden % int(forced):
            raise ValueError(f"{HIDDEN_TILE_ENV} must be one of {HIDDEN_TILES} and divide the hidden "
                             f"width {hidden}, got {forced!r}")
        return int(forced)
    for bh in HIDDEN_TILES:
        if hidden % bh == 0:
            return bh
    raise ValueError(f"hidden width {hidden} is not a multiple of 16")


def _launch_opts(D: int, N: int) -> dict:
    """Warps per program: 8 from 64×64 token tiles up (``TITANS_TRITON_WARPS`` overrides)."""
    warps = int(os.environ.get("TITANS_TRITON_WARPS", 0)) or (8 if D * N >= 64 * 64 else 4)
    return {"num_warps": warps, "num_stages": 1}


# Kernel versions and the choice among them live in the package (no triton import needed there).
from . import VARIANTS, variant  # noqa: E402, F401


def split_kernels(kernels: str | None = None) -> bool:
    """Whether the split V6 kernels run (sequential state kernel + query-pass kernel over
    (batch·head, chunk)) under kernel version ``kernels`` (default: :func:`variant`); both depths."""
    return (kernels or variant()) == "v6"


def _config(depth: int, N: int, D: int, HD: int, act: str, prec: str, kernels: str | None = None
            ) -> tuple[object, object, dict, list[tuple[int, ...]]]:
    """(forward kernel, backward kernel, launch keywords, per-program shapes of the backward's
    fp32 scratch buffers): the one place that fixes how a configuration is compiled, shared by
    the launches and by :func:`probe`. For the split V6 kernels the two "kernels" are pairs
    (state kernel, query kernel) and (query-backward kernel, state-backward kernel)."""
    kernels = kernels or variant()
    kw = {"N": N, "D": D, "PREC": prec} | _launch_opts(D, N)
    if depth == 1 and split_kernels(kernels):
        return (K.fwd1_state_kernel, K.fwd1_query_kernel), (K.bwd1_query_kernel, K.bwd1_state_kernel), kw, []
    if depth == 1:
        return K.fwd1_kernel, K.bwd1_kernel, kw, []
    kw |= {"HD": HD, "BH": hidden_tile(HD), "ACT": _ACT[act]}
    if split_kernels(kernels):
        return ((K.fwd2_state_kernel, K.fwd2_query_kernel), (K.bwd2_query_kernel, K.bwd2_state_kernel),
                kw, [])
    if kernels == "v2":
        return K.fwd2_kernel, K.bwd2_kernel, kw, [(N, HD), (N, HD)]
    if kernels == "v5":
        return K.fwd2_kernel, K.bwd2s_kernel, kw, [(N, HD), (N, HD), (2, N, N), (N, HD)]
    return K.fwd2_kernel, K.bwd2r_kernel, kw, [(N, HD), (N, HD), (2, N, N)]


def _split_arg_types(depth: int, tok_dtype: torch.dtype, NC: int, TP: int, BHN: int) -> dict[str, list]:
    """Argument types (and integer values) of the split V6 kernels, as launched."""
    f32 = torch.float32
    st = [f32] * (2 * depth)  # per layer W, S (snapshots, cotangents, query-pass partials)
    hid = [f32] * (2 if depth == 2 else 0)  # DD1 DX1
    tw = [f32] * (2 if depth == 2 else 0)  # L_M = 2: forget targets TW1 TW2 (dummies without one)
    return {
        # K V | D2 ENDS GN SN | snapshots | TW
        f"fwd{depth}_state_kernel": [tok_dtype] * 2 + [f32] * 4 + st + tw + [NC, TP],
        # Q K | D2 Y A C G | snapshots | TW
        f"fwd{depth}_query_kernel": [tok_dtype] * 2 + [f32] * 5 + st + tw + [NC, TP],
        # Q K | D2 DY A C G | snapshots | DQ DK DV DA DC DG | partials | DD1 DX1 | TW QT
        f"bwd{depth}_query_kernel": [tok_dtype] * 2 + [f32] * 5 + st + [f32] * 6 + st + hid + tw * 2
        + [NC, TP],
        # K | D2 ENDS GN SN | snapshots | cotangents | partials | DD1 DX1 | DK DV DENDS DGN DSN
        # | TW QT DT
        f"bwd{depth}_state_kernel": [tok_dtype] + [f32] * 4 + st * 3 + hid + [f32] * 5 + tw * 3
        + [NC, TP, BHN],
    }


def probe(depth: int, N: int, D: int, HD: int, act: str, prec: str, tok_dtype: torch.dtype,
          NC: int, TP: int, BHN: int, backward: bool, target: bool = False) -> str | None:
    """Compile the forward (and backward) kernel of a configuration for the current device
    without launching it and load it onto the device; ``None`` when both fit, else the reason
    (Triton's ``OutOfResources``, e.g. shared memory beyond the SM's limit, or any compile error).

    The argument types and integer values are those of the real launch, so the compiled kernels
    land in Triton's cache and the launch that follows reuses them (no extra compile)."""
    fwd, bwd, kw, scratch = _config(depth, N, D, HD, act, prec)
    if target and depth == 2:  # the kernels as the launch with forget targets compiles them
        kw = kw | {"HAS_T": True}
    if split_kernels():
        types = _split_arg_types(depth, tok_dtype, NC, TP, BHN)
        todo = [("forward", k, types[k.fn.__name__]) for k in fwd]
        todo += [("backward", k, types[k.fn.__name__]) for k in bwd] if backward else []
    else:
        f32 = torch.float32
        n_state = 2 * depth
        fwd_args = [tok_dtype] * 3 + [f32] * 7 + [f32] * n_state + [NC, TP]
        # q k v dy | A c G ends gn sn | snapshots, cotangent buffers | dq dk dv dA dc dG dends dgn dsn
        # | scratch
        bwd_args = [tok_dtype] * 3 + [f32] * 7 + [f32] * (2 * n_state) + [f32] * 9
        bwd_args += [f32] * len(scratch) + [NC, TP, BHN]
        todo = [("forward", fwd, fwd_args)] + ([("backward", bwd, bwd_args)] if backward else [])
    for name, kernel, args in todo:
        try:
            compiled = kernel.warmup(*args, grid=(1,), **kw)
            compiled._init_handles()  # raises OutOfResources (shared memory, threads) on this device
        except Exception as e:  # noqa: BLE001 - any failure to build or load means: do not use it
            return f"{name} kernel does not build for this device: {type(e).__name__}: {str(e)[:200]}"
    return None


class _MemoryFn(torch.autograd.Function):
    """Inputs: tokens ``[BHN, TP, D]`` (q, k, v), gates (A, c ``[BHN, NC, N]``, G
    ``[BHN, NC, N, N]``, ends ``[BHN, NC, 4]``, gn, sn ``[BHN, NC, N]``), then per layer
    (W_l, S_l) ``[BHN, d_l, d_{l+1}]`` fp32, then ``n_target`` (0, or 2 with L_M = 2 on the V6
    kernels) forget targets W̄_l ``[BHN, d_l, d_{l+1}]`` fp32. Outputs: y ``[BHN, TP, D]`` fp32
    and the final (W_l, S_l) per layer."""

    @staticmethod
    def forward(ctx, act: str, n_target: int, q, k, v, A, C, G, ends, gn, sn, *rest):
        BHN, TP, D = q.shape
        NC, N = A.shape[1], A.shape[2]
        state, targets = rest[:len(rest) - n_target], rest[len(rest) - n_target:]
        depth = len(state) // 2
        prec = precision(q.dtype)
        if os.environ.get("TRITON_INTERPRET", "0") == "1":
            _patch_interpreter()
        snaps = []
        for t in state:
            buf = torch.empty(BHN, NC + 1, *t.shape[1:], device=t.device, dtype=torch.float32)
            buf[:, 0] = t
            snaps.append(buf)
        y = torch.empty(BHN, TP, D, device=q.device, dtype=torch.float32)
        kernels = variant()
        fwd, _, kw, _ = _config(depth, N, D, state[0].shape[-1], act, prec, kernels)
        extra = []
        if n_target and not (depth == 2 and split_kernels(kernels)):
            raise ValueError(f"forget targets need the V6 kernels at L_M = 2, got L_M = {depth}, "
                             f"kernels {kernels}")
        if split_kernels(kernels):  # V6: state recurrence, then the query pass per chunk
            d2 = torch.empty(BHN, TP, D, device=q.device, dtype=torch.float32)
            tw = list(targets) if n_target else (snaps[0], snaps[2]) if depth == 2 else ()
            kt = kw | ({"HAS_T": True} if n_target else {})
            LAST_COMPILED[f"fwd{depth}_state"] = fwd[0][(BHN,)](k, v, d2, ends, gn, sn, *snaps, *tw, NC, TP,
                                                               **kt)
            LAST_COMPILED[f"fwd{depth}_query"] = fwd[1][(NC, BHN)](q, k, d2, y, A, C, G, *snaps, *tw, NC, TP,
                                                                  **kt)
            extra = [d2]
        else:
            LAST_COMPILED[f"fwd{depth}"] = fwd[(BHN,)](q, k, v, y, A, C, G, ends, gn, sn, *snaps, NC, TP,
                                                       **kw)
        ctx.save_for_backward(q, k, v, A, C, G, ends, gn, sn, *snaps, *targets, *extra)
        ctx.act, ctx.depth, ctx.prec, ctx.kernels, ctx.n_target = act, depth, prec, kernels, n_target
        return (y, *(s[:, NC].clone() for s in snaps))

    @staticmethod
    def backward(ctx, dy, *dstate):
        q, k, v, A, C, G, ends, gn, sn, *snaps = ctx.saved_tensors
        n_st = 2 * ctx.depth
        snaps, targets, extra = snaps[:n_st], snaps[n_st:n_st + ctx.n_target], snaps[n_st + ctx.n_target:]
        BHN, TP, D = q.shape
        NC, N = A.shape[1], A.shape[2]
        dy = torch.zeros_like(q, dtype=torch.float32) if dy is None else dy.float().contiguous()
        bufs = []
        for snap, ds in zip(snaps, dstate):
            buf = torch.empty(2, *snap[:, 0].shape, device=q.device, dtype=torch.float32)
            if ds is None:
                buf[NC % 2].zero_()
            else:
                buf[NC % 2] = ds
            bufs.append(buf)
        f32 = torch.float32
        dq, dk, dv = (torch.empty(BHN, TP, D, device=q.device, dtype=f32) for _ in range(3))
        dA, dC, dgn, dsn = (torch.empty_like(A) for _ in range(4))
        dG = torch.empty_like(G)
        dends = torch.zeros_like(ends)
        HD = snaps[0].shape[-1]
        _, bwd, kw, shapes = _config(ctx.depth, N, D, HD, ctx.act, ctx.prec, ctx.kernels)
        if split_kernels(ctx.kernels):  # V6: query-pass cotangents per chunk, then the chain
            (d2,) = extra
            part = [torch.empty(BHN, NC, *snap.shape[2:], device=q.device, dtype=f32) for snap in snaps]
            # L_M = 2: the query pass's dd1 and dx1 [BHN, TP, hidden], finished by the state kernel
            hid = [torch.empty(BHN, TP, HD, device=q.device, dtype=f32) for _ in range(2 * (ctx.depth == 2))]
            kt = kw
            if ctx.n_target:  # the targets, their per-chunk query partials, their cotangents (summed)
                tw = list(targets)
                qt = [torch.empty(BHN, NC, *t.shape[1:], device=q.device, dtype=f32) for t in targets]
                dt = [torch.zeros_like(t) for t in targets]
                kt = kw | {"HAS_T": True}
            else:  # dummies, never read (L_M = 2 kernels take the pointers)
                tw = qt = dt = [snaps[0], snaps[2]] if ctx.depth == 2 else []
            LAST_COMPILED[f"bwd{ctx.depth}_query"] = bwd[0][(NC, BHN)](
                q, k, d2, dy, A, C, G, *snaps, dq, dk, dv, dA, dC, dG, *part, *hid, *tw, *qt, NC, TP, **kt)
            LAST_COMPILED[f"bwd{ctx.depth}_state"] = bwd[1][(BHN,)](
                k, d2, ends, gn, sn, *snaps, *bufs, *part, *hid, dk, dv, dends, dgn, dsn, *tw, *qt, *dt,
                NC, TP, BHN, **kt)
            return (None, None, dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dA, dC, dG, dends, dgn, dsn,
                    *(b[0] for b in bufs), *(dt if ctx.n_target else ()))
        scratch = [torch.empty(BHN, *shape, device=q.device, dtype=f32) for shape in shapes]
        LAST_COMPILED[f"bwd{ctx.depth}"] = bwd[(BHN,)](q, k, v, dy, A, C, G, ends, gn, sn, *snaps, *bufs,
                                                      dq, dk, dv, dA, dC, dG, dends, dgn, dsn, *scratch,
                                                      NC, TP, BHN, **kw)
        return (None, None, dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dA, dC, dG, dends, dgn, dsn,
                *(b[0] for b in bufs))


def chunk_gates(theta: Tensor, eta: Tensor, alpha: Tensor, T: int, N: int) -> tuple[Tensor, ...]:
    """Gate inputs of the kernels from ``[B, H, TP]`` fp32 gates (padded with θ=0, η=1, α=0).

    Returns A, c ``[B, H, NC, N]``, G ``[B, H, NC, N, N]``, ends ``[B, H, NC, 4]`` and the
    end-of-chunk rows gn, sn ``[B, H, NC, N]``; the last chunk's ends sit at its last real token.
    """
    B, H, TP = theta.shape
    NC = TP // N
    gm = gate_matrices(*(g.unflatten(-1, (NC, N)) for g in (theta, eta, alpha)))
    last = torch.full((NC,), N - 1, dtype=torch.long, device=theta.device)
    last[-1:].fill_((T - 1) % N)  # fill_, not item assignment: no host-to-device copy (CUDA graphs)
    ar = torch.arange(NC, device=theta.device)
    a_n, c_n, e_n = gm.A[..., ar, last], gm.c[..., ar, last], gm.E[..., ar, last]
    ends = torch.stack([a_n, c_n, e_n, torch.zeros_like(a_n)], dim=-1)
    gn = gm.G[..., ar, last, :]
    return gm.A, gm.c, gm.G, ends, gn, gm.s_last


GATES_ENV = "TITANS_TRITON_GATES"
GATE_BACKENDS = ("auto", "triton", "torch")
FUSED_GATE_MAX_CHUNK = 64  # chunk 128: the backward kernel needs 229-262 KiB of shared memory


def gate_backend() -> str:
    """Who forms the gate inputs on the Triton path (environment variable
    ``TITANS_TRITON_GATES``): ``triton``, one fused kernel per direction (:mod:`.gate_kernels`,
    chunks ≤ 64); ``torch``, :func:`chunk_gates` (~34 ATen ops forward, ~63 backward); ``auto``
    (default), the fused kernels at chunks ≤ 64 and PyTorch at chunk 128 (whose fused backward
    does not fit in shared memory). Measured on the H200 (kernel-notes V10): the fused forward
    saves 7-10% of the op's forward, and the backward at 16 warps equals PyTorch's time with
    0.27 GB less peak."""
    b = os.environ.get(GATES_ENV, "auto")
    if b not in GATE_BACKENDS:
        raise ValueError(f"{GATES_ENV} must be one of {GATE_BACKENDS}, got {b!r}")
    return b


class _GateInputsFn(torch.autograd.Function):
    """:func:`chunk_gates` as two Triton kernels; inputs ``[B·H, TP]`` fp32 padded gates."""

    @staticmethod
    def forward(ctx, theta: Tensor, eta: Tensor, alpha: Tensor, T: int, N: int):
        from . import gate_kernels as GK

        BH, TP = theta.shape
        NC = TP // N
        kw = dict(device=theta.device, dtype=torch.float32)
        A, c, gn, sn = (torch.empty(BH, NC, N, **kw) for _ in range(4))
        G = torch.empty(BH, NC, N, N, **kw)
        ends = torch.empty(BH, NC, 4, **kw)
        warps = 4  # measured (V10); ptxas spills 880 B a thread at N = 64, 156 B with 8 warps
        GK.gates_fwd_kernel[(NC, BH)](theta, eta, alpha, A, c, G, ends, gn, sn, NC, TP, (T - 1) % N,
                                      N=N, num_warps=warps)
        ctx.save_for_backward(theta, eta, alpha)
        ctx.T, ctx.N = T, N
        return A, c, G, ends, gn, sn

    @staticmethod
    def backward(ctx, dA, dc, dG, dends, dgn, dsn):
        from . import gate_kernels as GK

        theta, eta, alpha = ctx.saved_tensors
        BH, TP = theta.shape
        N = ctx.N
        NC = TP // N
        shapes = [(BH, NC, N), (BH, NC, N), (BH, NC, N, N), (BH, NC, 4), (BH, NC, N), (BH, NC, N)]
        grads = [torch.zeros(s, device=theta.device, dtype=torch.float32) if g is None
                 else g.float().contiguous() for g, s in zip((dA, dc, dG, dends, dgn, dsn), shapes)]
        dth, det, dal = (torch.empty_like(theta) for _ in range(3))
        warps = 16 if N == 64 else 4  # 4 warps at N = 64 spilled 37 KB a thread (V10, measured slow)
        GK.gates_bwd_kernel[(NC, BH)](theta, eta, alpha, *grads, dth, det, dal, NC, TP, (ctx.T - 1) % N,
                                      N=N, num_warps=warps)
        return dth, det, dal, None, None


def _chunk_gates(theta: Tensor, eta: Tensor, alpha: Tensor, T: int, N: int) -> list[Tensor]:
    """Gate inputs ``[B·H, NC, ...]`` from ``[B, H, TP]`` fp32 padded gates, by the backend of
    :func:`gate_backend`."""
    B, H, TP = theta.shape
    backend = gate_backend()
    if backend == "triton" and N > FUSED_GATE_MAX_CHUNK:
        raise ValueError(f"{GATES_ENV}=triton supports chunks up to {FUSED_GATE_MAX_CHUNK}, got {N}; "
                         "use auto or torch")
    if backend == "triton" or (backend == "auto" and N <= FUSED_GATE_MAX_CHUNK):
        flat = [g.reshape(B * H, TP).contiguous() for g in (theta, eta, alpha)]
        return list(_GateInputsFn.apply(*flat, T, N))
    return [x.reshape(B * H, *x.shape[2:]).contiguous() for x in chunk_gates(theta, eta, alpha, T, N)]


def gate_inputs(theta: Tensor, eta: Tensor, alpha: Tensor, chunk_size: int) -> list[Tensor]:
    """The kernels' gate inputs for a whole call, from ``[B, T, H]`` gates: A, c
    ``[B·H, NC, N]``, G ``[B·H, NC, N, N]``, ends ``[B·H, NC, 4]``, gn, sn ``[B·H, NC, N]`` (fp32,
    differentiable; the sequence is padded to whole chunks with θ=0, η=1, α=0). Chunks are
    independent here, so a chunk-aligned run of the call may take a slice along NC."""
    B, T, H = theta.shape
    N = chunk_size
    pad = -(-T // N) * N - T
    with torch.autocast(theta.device.type, enabled=False):
        th, et, al = (g.float().transpose(1, 2) for g in (theta, eta, alpha))
        if pad:
            th, al = F.pad(th, (0, pad)), F.pad(al, (0, pad))
            et = F.pad(et, (0, pad), value=1.0)
        return _chunk_gates(th, et, al, T, N)


def memory_with_gates(q: Tensor, k: Tensor, v: Tensor, gates: list[Tensor], weights: list[Tensor],
                      momentum: list[Tensor], chunk_size: int, activation: str,
                      target: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The memory over ``[B, T, H, D]`` tokens with gate inputs from :func:`gate_inputs` (their
    ``NC = ceil(T / chunk_size)`` chunks); ``[B, H, d_l, d_{l+1}]`` state → y ``[B, T, H, D]``
    (q's dtype) and the final fp32 weights and momentum. ``target``: forget targets W̄_l
    ``[H | B,H, d_l, d_{l+1}]`` (``W_t = (1 − α_t) W_{t−1} + α_t W̄ + S_t``): at L_M = 2 inside the
    V6 kernels; at L_M = 1 by the exact shift ``Ŵ = W − W̄`` (a linear memory's gradient at
    ``Ŵ + W̄`` on (k, v) is its gradient at Ŵ on (k, v − k W̄), and Ŵ forgets towards zero)."""
    if target is not None and len(weights) == 1:
        return _shifted_linear_memory(q, k, v, gates, weights, momentum, chunk_size, activation,
                                      target[0])
    B, T, H, D = q.shape
    if q.is_cuda and len(weights) == 2 and not ALLOW_NARROW_TILES_ON_GPU:
        tile = hidden_tile(weights[0].shape[-1])
        if tile < 64:
            raise ValueError(f"{HIDDEN_TILE_ENV}={tile}: hidden tiles narrower than 64 columns crash "
                             "on the GPU (illegal memory access, docs/kernel-notes.md V8); unset it")
    N = chunk_size
    NC = -(-T // N)
    if gates[0].shape[1] != NC:
        raise ValueError(f"gates cover {gates[0].shape[1]} chunks, the tokens {NC} (T={T}, chunk {N})")
    pad = NC * N - T
    gates = [g.contiguous() for g in gates]  # the kernels index them densely (a chunk slice is a view)

    def tokens(x: Tensor) -> Tensor:
        x = x.transpose(1, 2)
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(B * H, NC * N, D).contiguous()

    with torch.autocast(q.device.type, enabled=False):
        state = []
        for w, s in zip(weights, momentum):
            state += [w.float().reshape(B * H, *w.shape[-2:]).contiguous(),
                      s.float().reshape(B * H, *s.shape[-2:]).contiguous()]
        targets = [t.float().expand(B, H, *t.shape[-2:]).reshape(B * H, *t.shape[-2:]).contiguous()
                   for t in target or ()]
        y, *new = _MemoryFn.apply(activation, len(targets), tokens(q), tokens(k), tokens(v), *gates,
                                  *state, *targets)
    y = y.view(B, H, NC * N, D)[:, :, :T].transpose(1, 2).to(q.dtype)
    new = [t.view(B, H, *t.shape[1:]) for t in new]
    return y, new[0::2], new[1::2]


def _shifted_linear_memory(q: Tensor, k: Tensor, v: Tensor, gates: list[Tensor], weights: list[Tensor],
                           momentum: list[Tensor], chunk_size: int, activation: str, target: Tensor
                           ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """L_M = 1 with forget target W̄ on the zero-target kernels: Ŵ = W − W̄ follows
    ``Ŵ_t = (1 − α_t) Ŵ_{t−1} + S_t`` with the surprise of (k, v − k W̄), and ``y = q Ŵ_t + q W̄``
    (exact; the momentum is the same in both forms). Autograd carries W̄'s gradient."""
    B, T, H, D = q.shape
    with torch.autocast(q.device.type, enabled=False):
        tw = target.float().expand(B, H, D, D)
        v_hat = (v.float() - torch.einsum("bthd,bhde->bthe", k.float(), tw)).to(v.dtype)
        y, new_w, new_s = memory_with_gates(q, k, v_hat, gates, [weights[0].float() - tw], momentum,
                                            chunk_size, activation)
        y = (y.float() + torch.einsum("bthd,bhde->bthe", q.float(), tw)).to(q.dtype)
    return y, [new_w[0] + tw], new_s


def triton_chunked_memory(q: Tensor, k: Tensor, v: Tensor, theta: Tensor, eta: Tensor, alpha: Tensor,
                          weights: list[Tensor], momentum: list[Tensor], chunk_size: int,
                          activation: str, target: list[Tensor] | None = None
                          ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Same contract as ``chunked_neural_memory`` (offset 0): ``[B, T, H, D]`` inputs and
    ``[B, H, d_l, d_{l+1}]`` fp32 state → ``y [B, T, H, D]`` (q's dtype), final weights, momentum;
    ``target`` as in :func:`memory_with_gates`."""
    B, T, H, D = q.shape
    if T == 0:  # nothing to read or write: the state passes through unchanged
        return q.new_zeros(B, 0, H, D), [w.float() for w in weights], [s.float() for s in momentum]
    gates = gate_inputs(theta, eta, alpha, chunk_size)
    return memory_with_gates(q, k, v, gates, weights, momentum, chunk_size, activation, target)
