"""Public entry point of the neural memory op: validates, then picks an implementation."""

from __future__ import annotations

from torch import Tensor

from .chunked import chunked_neural_memory
from .state import MemoryState, broadcast_state, validate_inputs


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

    Returns:
        ``y [B, T, H, D]`` with ``y_t = M(q_t; W_t)`` after token t's update, and the new
        :class:`MemoryState` (always with batch dimension).
    """
    validate_inputs(q, k, v, theta, eta, alpha, state, chunk_size, activation, check_gates)
    weights, momentum = broadcast_state(state, q.shape[0])
    y, weights, momentum, _ = chunked_neural_memory(
        q, k, v, theta, eta, alpha, weights, momentum, chunk_size, activation)
    return y, MemoryState(tuple(weights), tuple(momentum))
