"""``forget_target``: α forgets towards given weights W̄ instead of towards zero
(``W_t = (1 − α_t) W_{t−1} + α_t W̄ + S_t``). The chunked PyTorch path against the token-by-token
reference in float64 (rtol 1e-9, observed ~1e-14), forward, state and every gradient (W̄'s
included); the exact cases; streaming and recomputed segments. The Triton kernels with a
target: tests/ops/test_neural_memory_triton.py.
"""

from __future__ import annotations

import pytest
import torch

from titans.ops import MemoryState, neural_memory, neural_memory_reference

from .test_neural_memory import F64, assert_close, make_inputs


def with_target(B, T, H, D, depth, requires_grad=False, batched=False):
    torch.manual_seed(1)
    args, state, tensors = make_inputs(B, T, H, D, depth, requires_grad=requires_grad)
    with torch.no_grad():
        args[3].mul_(0.4)  # θ ≤ 0.2 keeps the random deep memory finite
    lead = (B, H) if batched else (H,)
    target = [torch.randn(*lead, *w.shape[-2:], dtype=F64) / w.shape[-2] ** 0.5 for w in state.weights]
    if requires_grad:
        for t in target:
            t.requires_grad_()
    return args, state, tensors + target, target


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [1, 16, 64])
@pytest.mark.parametrize("B,T,H,batched", [(1, 37, 1, False), (2, 70, 3, True)])
def test_forward_state_and_gradients_match_reference(depth, chunk_size, B, T, H, batched):
    args, state, leaves, target = with_target(B, T, H, 6, depth, requires_grad=True, batched=batched)
    y, st = neural_memory(*args, state, chunk_size=chunk_size, forget_target=target)
    y_ref, st_ref = neural_memory_reference(*args, state, chunk_size=chunk_size, forget_target=target)
    outs, refs = (y, *st.weights, *st.momentum), (y_ref, *st_ref.weights, *st_ref.momentum)
    for i, (a, b) in enumerate(zip(outs, refs)):
        assert torch.isfinite(b).all()
        assert_close(a, b, name=f"output {i}")
    probes = [torch.randn_like(t) for t in outs]
    g = torch.autograd.grad(sum((p * o).sum() for p, o in zip(probes, outs)), leaves)
    g_ref = torch.autograd.grad(sum((p * o).sum() for p, o in zip(probes, refs)), leaves)
    for i, (a, b) in enumerate(zip(g, g_ref)):
        assert_close(a, b, name=f"grad {i}")
    assert all(t.abs().max() > 0 for t in g[-depth:])  # W̄ is trained through the decay


def test_zero_target_is_the_paper_form_and_a_target_changes_it():
    args, state, _, target = with_target(2, 50, 2, 6, 2)
    y0, st0 = neural_memory(*args, state, chunk_size=16)
    yz, _ = neural_memory(*args, state, chunk_size=16, forget_target=[torch.zeros_like(t) for t in target])
    assert_close(yz, y0, rtol=1e-14)
    yt, _ = neural_memory(*args, state, chunk_size=16, forget_target=target)
    assert (yt - y0).abs().max() > 1e-3


def test_without_writes_the_state_relaxes_to_the_target_exactly():
    """θ = 0, no momentum: ``W_T − W̄ = Π(1 − α)(W_0 − W̄)``; with W̄ = W_0 the weights never move,
    with α = 1 they are W̄ after the first token."""
    (q, k, v, theta, eta, alpha), state, _, target = with_target(1, 40, 2, 6, 2)
    zero = torch.zeros_like(theta)
    st = MemoryState(state.weights, None)
    _, same = neural_memory(q, k, v, zero, eta, alpha, st, chunk_size=16, forget_target=list(state.weights))
    for a, b in zip(same.weights, state.weights):
        assert_close(a, b.expand_as(a), rtol=1e-14)
    ones = torch.ones_like(alpha)
    _, reset = neural_memory(q, k, v, zero, eta, ones, st, chunk_size=16, forget_target=target)
    for a, b in zip(reset.weights, target):
        assert_close(a, b.expand_as(a), rtol=1e-14)
    _, decayed = neural_memory(q, k, v, zero, eta, alpha, st, chunk_size=16, forget_target=target)
    keep = torch.prod(1 - alpha, dim=1)[..., None, None]  # [B, H, 1, 1]
    for a, w, g in zip(decayed.weights, state.weights, target):
        assert_close(a, g + keep * (w - g), rtol=1e-12)


@pytest.mark.parametrize("depth", [1, 2])
def test_two_calls_and_recomputed_segments_equal_one_call(depth):
    args, state, leaves, target = with_target(2, 96, 2, 6, depth, requires_grad=True)
    y, st = neural_memory(*args, state, chunk_size=16, forget_target=target)
    y1, st1 = neural_memory(*(a[:, :48] for a in args), state, chunk_size=16, forget_target=target)
    y2, st2 = neural_memory(*(a[:, 48:] for a in args), st1, chunk_size=16, forget_target=target)
    assert_close(torch.cat([y1, y2], 1), y, rtol=1e-12)
    for a, b in zip(st2.weights + st2.momentum, st.weights + st.momentum):
        assert_close(a, b, rtol=1e-12)
    yr, str_ = neural_memory(*args, state, chunk_size=16, forget_target=target, recompute_segment=32)
    outs, rec = (y, *st.weights), (yr, *str_.weights)
    for a, b in zip(rec, outs):
        assert_close(a, b, rtol=1e-12)
    probes = [torch.randn_like(t) for t in outs]
    g = torch.autograd.grad(sum((p * o).sum() for p, o in zip(probes, outs)), leaves)
    g_rec = torch.autograd.grad(sum((p * o).sum() for p, o in zip(probes, rec)), leaves)
    for a, b in zip(g_rec, g):
        assert_close(a, b, rtol=1e-12)


def test_bad_targets_are_refused():
    args, state, _, target = with_target(1, 20, 2, 6, 2)
    with pytest.raises(ValueError, match="forget_target must be None or 2 tensors"):
        neural_memory(*args, state, forget_target=target[:1])
    with pytest.raises(ValueError, match=r"forget_target\[1\]"):
        neural_memory(*args, state, forget_target=[target[0], target[1].mT])
