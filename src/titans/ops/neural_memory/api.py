"""Public entry point of the neural memory op: validates, then picks an implementation."""

from __future__ import annotations

import os

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from . import triton as triton_backend
from .chunked import chunked_neural_memory
from .state import (
    MemoryState,
    broadcast_state,
    check_forget_target,
    check_recompute_segment,
    validate_inputs,
)

BACKENDS = ("auto", "torch", "triton")
BACKEND_ENV = "TITANS_NEURAL_MEMORY_BACKEND"  # process-wide override of backend="auto"


def _requested_backend(backend: str) -> str:
    """``backend`` checked, with ``auto`` replaced by ``TITANS_NEURAL_MEMORY_BACKEND`` if set."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto")
        if backend not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV} must be one of {BACKENDS}, got {backend!r}")
    return backend


def select_backend(backend: str, q: Tensor, weights, chunk_size: int, activation: str = "gelu",
                   backward: bool = True, target: bool = False) -> str:
    """``torch`` or ``triton`` for this call.

    ``auto`` takes the Triton kernels when all of these hold, else the PyTorch path:

    - q is a bf16/fp16 CUDA tensor (the kernels multiply bf16 operands with fp32 accumulation
      and keep an fp32 state; fp32 inputs keep the exact PyTorch path unless Triton is forced);
    - memory depth L_M ∈ {1, 2}; head dim ∈ {16, 32, 64, 128}; chunk ∈ {16, 32, 64, 128} but not
      chunk 128 with head dim 128 at L_M = 2; for L_M = 2 a hidden width that is a multiple of
      64; state fp32 or narrower (``triton.static_reason``);
    - the configuration's kernels compile and load on this device (checked once per
      configuration at its first call, forward and, when ``backward``, backward kernel; a
      configuration that does not fit, e.g. shared memory beyond the SM's limit, is warned
      about once and sent to the PyTorch path from then on: ``triton.resource_reason``).

    ``triton`` raises ``ValueError`` saying why when any of these (but the dtype) fails. The
    environment variable ``TITANS_NEURAL_MEMORY_BACKEND`` (same values) replaces ``auto``, e.g.
    to force the PyTorch path under a layer that calls the op with the default."""
    backend = _requested_backend(backend)
    if backend == "torch" or (backend == "auto" and not (
            q.is_cuda and q.dtype in (torch.bfloat16, torch.float16))):
        return "torch"
    reason = triton_backend.unsupported_reason(q, weights, chunk_size)
    if reason is None and target and len(weights) == 2 and triton_backend.variant() != "v6":
        reason = (f"forget_target at L_M = 2 needs the V6 kernels, TITANS_TRITON_KERNELS is "
                  f"{triton_backend.variant()}")
    if reason is None:
        reason = triton_backend.resource_reason(q, weights, chunk_size, activation, backward,
                                                 target=target)
    if reason is None:
        return "triton"
    if backend == "triton":
        raise ValueError(f"backend='triton' cannot run this call: {reason}")
    return "torch"


def neural_memory(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    state: MemoryState,
    chunk_size: int = 64,
    activation: str = "gelu",
    check_gates: bool = False,
    backend: str = "auto",
    recompute_segment: int | None = None,
    forget_target: tuple[Tensor, ...] | list[Tensor] | None = None,
) -> tuple[Tensor, MemoryState]:
    """Neural long-term memory (Titans, eq. 12–16), chunk-parallel and differentiable.

    Args:
        q, k, v: ``[B, T, H, D]`` queries, keys, values.
        theta, eta, alpha: ``[B, T, H]`` learning rate θ ≥ 0, momentum η ∈ [0, 1], forget α ∈ [0, 1].
        state: :class:`MemoryState`; weights[i] ``[H | B,H, d_i, d_{i+1}]``, momentum or ``None``.
        chunk_size: tokens per chunk; gradients inside a chunk are taken at its start weights
            (``1`` is exact per-token online gradient descent). Chunks count from this call's start.
        activation: memory-MLP activation, one of ``gelu | silu | relu | identity``.
        check_gates: also check gate ranges (costs a device sync).
        backend: ``auto | torch | triton``. ``auto`` runs the fused Triton kernels
            (``ops/neural_memory/triton``) for bf16/fp16 inputs on CUDA when they support the
            call, else PyTorch. Support matrix (:func:`select_backend`): L_M ∈ {1, 2}, head dim
            ∈ {16, 32, 64, 128}, chunk ∈ {16, 32, 64, 128} except chunk 128 at head dim 128
            with L_M = 2, L_M = 2 hidden width a multiple of 64, and the configuration's kernels
            must compile and load on the device (checked once per configuration before its
            first launch; if not, a one-time warning and the PyTorch path), so ``auto`` does not
            select a configuration whose kernels exceed the device's resources.
        recompute_segment: ``None`` (default) keeps every chunk's intermediates (state
            snapshots, per-chunk partials) for the backward pass. A positive multiple of
            ``chunk_size`` splits a call that needs gradients into segments of that many tokens,
            runs each under activation checkpointing with the state carried between them, and
            recomputes each segment's forward in the backward pass: the op's stored
            intermediates shrink to one segment's plus one state per segment boundary, at the cost
            of a second forward. Same result (chunks still count from the call's start).
        forget_target: ``None`` (default, the paper's ``W_t = (1 − α_t) W_{t−1} + S_t``: α
            forgets towards zero) or one tensor per layer, ``[H | B,H, d_i, d_{i+1}]``, that α
            forgets towards instead: ``W_t = (1 − α_t) W_{t−1} + α_t W̄ + S_t`` (differentiable in
            W̄). Both paths: the Triton kernels take it at L_M = 2 (V6 kernels) and at L_M = 1
            (as the shift ``W − W̄``, exact).

    Returns:
        ``y [B, T, H, D]`` with ``y_t = M(q_t; W_t)`` after token t's update, and the new
        :class:`MemoryState` (always with batch dimension).
    """
    validate_inputs(q, k, v, theta, eta, alpha, state, chunk_size, activation, check_gates)
    check_recompute_segment(recompute_segment, chunk_size)
    check_forget_target(forget_target, state)
    weights, momentum = broadcast_state(state, q.shape[0])
    target = None if forget_target is None else list(forget_target)
    backward = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (
        q, k, v, theta, eta, alpha, *weights, *momentum, *(target or [])))
    if backward and recompute_segment is not None and q.shape[1] > recompute_segment:
        return _recomputed_segments(q, k, v, theta, eta, alpha, weights, momentum, chunk_size,
                                    activation, backend, recompute_segment, target)
    if select_backend(backend, q, weights, chunk_size, activation, backward, target is not None) == "triton":
        y, new_w, new_s = triton_backend.triton_chunked_memory(
            q, k, v, theta, eta, alpha, weights, momentum, chunk_size, activation, target)
        weights = [n.to(w.dtype) for n, w in zip(new_w, weights)]
        momentum = [n.to(m.dtype) for n, m in zip(new_s, momentum)]
        return y, MemoryState(tuple(weights), tuple(momentum))
    y, weights, momentum, _ = chunked_neural_memory(
        q, k, v, theta, eta, alpha, weights, momentum, chunk_size, activation, forget_target=target)
    return y, MemoryState(tuple(weights), tuple(momentum))


def _recomputed_segments(q: Tensor, k: Tensor, v: Tensor, theta: Tensor, eta: Tensor, alpha: Tensor,
                         weights: list[Tensor], momentum: list[Tensor], chunk_size: int, activation: str,
                         backend: str, segment: int, target: list[Tensor] | None = None
                         ) -> tuple[Tensor, MemoryState]:
    """:func:`neural_memory` over segments of ``segment`` tokens, each under non-reentrant
    activation checkpointing: the forward keeps only each segment's inputs (views of the call's)
    and the state entering it; the backward re-runs one segment's forward at a time.

    On the Triton path the gate inputs of every chunk are formed once for the whole call, outside
    the checkpoints, and each segment takes its chunks' slice: the gates are most of the op's
    host-side glue, which would otherwise run three times a segment (kernel-notes V9)."""
    depth = len(weights)
    dtypes = [t.dtype for t in (*weights, *momentum)]
    state = (*weights, *momentum)
    ys = []
    n_target = 0 if target is None else depth
    if select_backend(backend, q, weights, chunk_size, activation, True, target is not None) == "triton":
        gates = triton_backend.gate_inputs(theta, eta, alpha, chunk_size)
        per_segment = segment // chunk_size  # segment is a multiple of the chunk
        n_gates = len(gates)

        def run_triton(q, k, v, *rest):
            gates, tgt, state = rest[:n_gates], rest[n_gates:n_gates + n_target], rest[n_gates + n_target:]
            y, new_w, new_s = triton_backend.memory_with_gates(
                q, k, v, list(gates), list(state[:depth]), list(state[depth:]), chunk_size, activation,
                list(tgt) or None)
            return (y, *new_w, *new_s)

        parts = zip(*(x.split(segment, dim=1) for x in (q, k, v)),
                    zip(*(g.split(per_segment, dim=1) for g in gates)))
        for q_s, k_s, v_s, gates_s in parts:
            y, *state = checkpoint(run_triton, q_s, k_s, v_s, *gates_s, *(target or []), *state,
                                   use_reentrant=False)
            ys.append(y)
    else:

        def run(q, k, v, theta, eta, alpha, *rest):
            tgt, state = rest[:n_target] or None, rest[n_target:]
            y, new = neural_memory(q, k, v, theta, eta, alpha, MemoryState(state[:depth], state[depth:]),
                                   chunk_size, activation, backend="torch", forget_target=tgt)
            return (y, *new.weights, *new.momentum)

        for part in zip(*(x.split(segment, dim=1) for x in (q, k, v, theta, eta, alpha))):
            y, *state = checkpoint(run, *part, *(target or []), *state, use_reentrant=False)
            ys.append(y)
    state = [t.to(dtype) for t, dtype in zip(state, dtypes)]
    return torch.cat(ys, dim=1), MemoryState(tuple(state[:depth]), tuple(state[depth:]))
