"""Slow, obviously-correct token-by-token neural memory: the ground truth for every fast path.

Each token's gradient is taken with ``torch.autograd.grad`` on the literal loss
``0.5 * ||M(k_t; W_anchor) - v_t||^2`` at the weights from the start of its chunk, then
``S_t = eta_t S_{t-1} - theta_t u_t``, ``W_t = (1 - alpha_t) W_{t-1} + alpha_t W̄ + S_t`` (W̄ the
forget target, zero unless given) and ``y_t = M(q_t; W_t)``. ``create_graph=True`` keeps it
differentiable, so its gradients are a reference too. Cost: O(T) Python steps; use it on small shapes only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .activations import get_activation
from .state import MemoryState, broadcast_state, check_forget_target, validate_inputs


def memory_mlp(x: Tensor, weights: list[Tensor] | tuple[Tensor, ...], activation: str) -> Tensor:
    """``M(x)``: ``h_i = act(h_{i-1} @ W_i)`` for ``i < L``, ``M(x) = h_{L-1} @ W_L``.

    x: ``[..., n, d_0]``, weights[i]: ``[..., d_i, d_{i+1}]`` (leading dims broadcast).
    """
    act, _ = get_activation(activation)
    h = x
    for i, w in enumerate(weights):
        h = h @ w
        if i < len(weights) - 1:
            h = act(h)
    return h


def neural_memory_reference(
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
    forget_target: tuple[Tensor, ...] | list[Tensor] | None = None,
) -> tuple[Tensor, MemoryState]:
    """Token-by-token reference of :func:`titans.ops.neural_memory` (same contract).

    q, k, v: ``[B, T, H, D]``; theta, eta, alpha: ``[B, T, H]``. Returns ``y: [B, T, H, D]`` and
    the state after the last token (with batch dimension).
    """
    validate_inputs(q, k, v, theta, eta, alpha, state, chunk_size, activation, check_gates)
    check_forget_target(forget_target, state)
    B, T, H, D = q.shape
    weights, momentum = broadcast_state(state, B)
    target = None if forget_target is None else list(forget_target)
    track = torch.is_grad_enabled() and any(
        t.requires_grad for t in (q, k, v, theta, eta, alpha, *weights, *momentum, *(target or [])))
    ys = []
    with torch.enable_grad():
        anchor = weights
        for t in range(T):
            if t % chunk_size == 0:
                # Gradients for this chunk are taken at the weights after all earlier tokens.
                anchor = [w if w.requires_grad else w.detach().requires_grad_() for w in weights]
                weights = anchor
            kt, vt, qt = k[:, t, :, None, :], v[:, t, :, None, :], q[:, t, :, None, :]  # [B,H,1,D]
            loss = 0.5 * (memory_mlp(kt, anchor, activation) - vt).pow(2).sum()
            # Per-(batch, head) losses are independent, so the summed loss's gradient w.r.t. the
            # [B, H, ...] anchor is each token's own gradient.
            grads = torch.autograd.grad(loss, anchor, create_graph=True)
            th = theta[:, t, :, None, None]
            et = eta[:, t, :, None, None]
            decay = 1.0 - alpha[:, t, :, None, None]
            momentum = [et * s - th * u for s, u in zip(momentum, grads)]
            weights = [decay * w + s for w, s in zip(weights, momentum)]
            if target is not None:
                weights = [w + (1.0 - decay) * g for w, g in zip(weights, target)]
            ys.append(memory_mlp(qt, weights, activation)[:, :, 0])  # [B, H, D]
    if T == 0:
        y = q.new_zeros(B, 0, H, D)
    else:
        y = torch.stack(ys, dim=1)
    new_state = MemoryState(tuple(weights), tuple(momentum))
    if not track:
        y, new_state = y.detach(), new_state.detach()
    return y, new_state
