"""The memory state and argument validation shared by every implementation of the op."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

ACTIVATIONS = ("gelu", "silu", "relu", "identity")


class MemoryState(NamedTuple):
    """Recurrent state of the neural memory: the MLP weights and their momentum.

    weights:  tuple of L_M tensors, layer i of shape ``[H, d_i, d_{i+1}]`` (shared, broadcast
              over the batch) or ``[B, H, d_i, d_{i+1}]``; ``d_0 = d_L = D``.
    momentum: tuple of the same shapes with a batch dimension, or ``None`` for zeros.
    """

    weights: tuple[Tensor, ...]
    momentum: tuple[Tensor, ...] | None = None

    @property
    def depth(self) -> int:
        return len(self.weights)

    def detach(self) -> MemoryState:
        mom = None if self.momentum is None else tuple(m.detach() for m in self.momentum)
        return MemoryState(tuple(w.detach() for w in self.weights), mom)


def check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def check_recompute_segment(recompute_segment: int | None, chunk_size: int) -> None:
    """``recompute_segment`` must be ``None`` or a positive multiple of ``chunk_size``."""
    if recompute_segment is None:
        return
    ok = isinstance(recompute_segment, int) and not isinstance(recompute_segment, bool)
    if not (ok and recompute_segment > 0 and recompute_segment % chunk_size == 0):
        raise ValueError(f"recompute_segment must be None or a positive multiple of chunk_size="
                         f"{chunk_size}, got {recompute_segment!r}")


def check_forget_target(forget_target, state: MemoryState) -> None:
    """``forget_target`` must be ``None`` or one tensor per memory layer, each broadcastable to
    that layer's weights ``[B, H, d_i, d_{i+1}]`` (``[H, d_i, d_{i+1}]`` or the same shape)."""
    if forget_target is None:
        return
    if not isinstance(forget_target, (list, tuple)) or len(forget_target) != len(state.weights):
        raise ValueError(f"forget_target must be None or {len(state.weights)} tensors (one per memory "
                         f"layer), got {type(forget_target).__name__}")
    for i, (g, w) in enumerate(zip(forget_target, state.weights)):
        if not isinstance(g, Tensor) or g.dim() not in (3, 4) or g.shape[-3:] != w.shape[-3:]:
            raise ValueError(f"forget_target[{i}] must be [H, d_i, d_i+1] or [B, H, d_i, d_i+1] "
                             f"= {tuple(w.shape[-3:])} at the end, got shape {_shape(g)}")


def check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def validate_inputs(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    state: MemoryState,
    chunk_size: int,
    activation: str,
    check_gates: bool = False,
) -> None:
    """Raise ``ValueError`` naming the offending argument for anything off-contract."""
    check_chunk_size(chunk_size)
    check_activation(activation)
    if not isinstance(state, MemoryState):
        raise ValueError(f"state must be a MemoryState, got {type(state).__name__}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor [B, T, H, D], got shape {_shape(t)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v must have equal shapes [B, T, H, D]; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    B, T, H, D = q.shape
    for name, g in (("theta", theta), ("eta", eta), ("alpha", alpha)):
        if not isinstance(g, Tensor) or tuple(g.shape) != (B, T, H):
            raise ValueError(f"{name} must have shape [B, T, H] = {(B, T, H)}, got {_shape(g)}")
        if not g.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {g.dtype}")
        if g.device != q.device:
            raise ValueError(f"{name} is on {g.device} but q is on {q.device}")
    weights = state.weights
    if not isinstance(weights, (tuple, list)) or len(weights) < 1:
        raise ValueError("state.weights must be a non-empty tuple of [H, d_i, d_i+1] tensors")
    d_in = D
    for i, w in enumerate(weights):
        if not isinstance(w, Tensor) or w.dim() not in (3, 4):
            raise ValueError(f"state.weights[{i}] must be [H, d_in, d_out] or [B, H, d_in, d_out], "
                             f"got shape {_shape(w)}")
        if not w.is_floating_point():
            raise ValueError(f"state.weights[{i}] must be floating point, got {w.dtype}")
        if w.dim() == 4 and w.shape[0] != B:
            raise ValueError(f"state.weights[{i}] has batch {w.shape[0]}, expected B={B}")
        if w.shape[-3] != H:
            raise ValueError(f"state.weights[{i}] has {w.shape[-3]} heads, expected H={H}")
        if w.shape[-2] != d_in:
            raise ValueError(f"state.weights[{i}] input width {w.shape[-2]} != {d_in} "
                             f"(d_0 must equal D and each layer must chain)")
        if w.device != q.device:
            raise ValueError(f"state.weights[{i}] is on {w.device} but q is on {q.device}")
        d_in = w.shape[-1]
    if d_in != D:
        raise ValueError(f"the last memory layer must map back to D={D}, got width {d_in}")
    if state.momentum is not None:
        if len(state.momentum) != len(weights):
            raise ValueError(f"state.momentum has {len(state.momentum)} tensors, expected {len(weights)}")
        for i, (m, w) in enumerate(zip(state.momentum, weights)):
            if not isinstance(m, Tensor) or tuple(m.shape[-3:]) != tuple(w.shape[-3:]) or (
                m.dim() == 4 and m.shape[0] != B) or m.dim() not in (3, 4):
                raise ValueError(f"state.momentum[{i}] must have shape [B, H, d_in, d_out] = "
                                 f"{(B, *w.shape[-3:])}, got {_shape(m)}")
    if check_gates:
        _check_gate_ranges(theta, eta, alpha)


def _check_gate_ranges(theta: Tensor, eta: Tensor, alpha: Tensor) -> None:
    # Opt-in: each .item() below is a device sync.
    if bool((theta < 0).any()) or not bool(torch.isfinite(theta).all()):
        raise ValueError("theta (learning rate) must be finite and >= 0")
    for name, g in (("eta", eta), ("alpha", alpha)):
        if bool(((g < 0) | (g > 1)).any()) or not bool(torch.isfinite(g).all()):
            raise ValueError(f"{name} must lie in [0, 1]")


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__


def broadcast_state(state: MemoryState, batch: int) -> tuple[list[Tensor], list[Tensor]]:
    """Weights and momentum as lists of ``[B, H, d_in, d_out]`` tensors (zeros for no momentum)."""
    weights = [w.expand(batch, *w.shape[-3:]) if w.dim() == 3 else w for w in state.weights]
    if state.momentum is None:
        momentum = [torch.zeros_like(w) for w in weights]
    else:
        momentum = [m.expand(batch, *m.shape[-3:]) if m.dim() == 3 else m for m in state.momentum]
    return weights, momentum
