"""neural_memory (chunk-parallel) against the token-by-token reference, in float64.

Tolerances: float64 forward/state/gradient agree to rtol 1e-9 (observed ~1e-15); the error
that matters is structural (a wrong coefficient gives O(1) relative error).
"""

from __future__ import annotations

import pytest
import torch

from titans.ops import MemoryState, neural_memory, neural_memory_reference

F64 = torch.float64


def make_inputs(B, T, H, D, depth, hidden=None, batched_weights=False, momentum=True,
                requires_grad=False, dtype=F64):
    hidden = hidden or 2 * D
    q, k, v = (torch.randn(B, T, H, D, dtype=dtype) for _ in range(3))
    q = q / q.norm(dim=-1, keepdim=True)
    k = k / k.norm(dim=-1, keepdim=True)
    theta = torch.rand(B, T, H, dtype=dtype) * 0.5
    eta = torch.rand(B, T, H, dtype=dtype)
    alpha = torch.rand(B, T, H, dtype=dtype) * 0.2
    dims = [D] + [hidden] * (depth - 1) + [D]
    lead = (B, H) if batched_weights else (H,)
    weights = tuple(torch.randn(*lead, dims[i], dims[i + 1], dtype=dtype) / dims[i] ** 0.5
                    for i in range(depth))
    mom = tuple(0.1 * torch.randn(B, H, dims[i], dims[i + 1], dtype=dtype)
                for i in range(depth)) if momentum else None
    tensors = [q, k, v, theta, eta, alpha, *weights, *(mom or ())]
    if requires_grad:
        for t in tensors:
            t.requires_grad_()
    return (q, k, v, theta, eta, alpha), MemoryState(weights, mom), tensors


def assert_close(a, b, rtol=1e-9, name=""):
    scale = b.abs().max().clamp_min(1e-12)
    err = ((a - b).abs().max() / scale).item()
    assert err < rtol, f"{name}: relative max error {err:.3e} >= {rtol:.1e}"


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [1, 16, 64])
@pytest.mark.parametrize("B,T,H", [(1, 37, 1), (2, 70, 3)])
def test_forward_and_state_match_reference(depth, chunk_size, B, T, H):
    args, state, _ = make_inputs(B, T, H, 8, depth)
    y, st = neural_memory(*args, state, chunk_size=chunk_size)
    y_ref, st_ref = neural_memory_reference(*args, state, chunk_size=chunk_size)
    assert y.shape == (B, T, H, 8)
    assert_close(y, y_ref, name="y")
    for i, (a, b) in enumerate(zip(st.weights + st.momentum, st_ref.weights + st_ref.momentum)):
        assert a.shape[0] == B
        assert_close(a, b, name=f"state[{i}]")


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [1, 16, 64])
@pytest.mark.parametrize("activation", ["gelu", "silu"])
@pytest.mark.parametrize("B,T,H", [(2, 21, 2), (1, 70, 1)])
def test_gradients_match_reference(depth, chunk_size, activation, B, T, H):
    D = 6
    args, state, tensors = make_inputs(B, T, H, D, depth, requires_grad=True)
    y, st = neural_memory(*args, state, chunk_size=chunk_size, activation=activation)
    y_ref, st_ref = neural_memory_reference(*args, state, chunk_size=chunk_size, activation=activation)
    # A random linear functional of every output, so all cotangents are non-trivial.
    probes = [torch.randn_like(t) for t in (y, *st.weights, *st.momentum)]

    def objective(outs):
        return sum((p * o).sum() for p, o in zip(probes, outs))

    g = torch.autograd.grad(objective((y, *st.weights, *st.momentum)), tensors)
    g_ref = torch.autograd.grad(objective((y_ref, *st_ref.weights, *st_ref.momentum)), tensors)
    names = ["q", "k", "v", "theta", "eta", "alpha"] + [f"w{i}" for i in range(depth)] + [
        f"s{i}" for i in range(depth)]
    for name, a, b in zip(names, g, g_ref):
        assert_close(a, b, name=f"grad {name}")


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_other_activations(activation):
    args, state, _ = make_inputs(2, 19, 2, 8, 2, momentum=False)
    y, st = neural_memory(*args, state, chunk_size=4, activation=activation)
    y_ref, st_ref = neural_memory_reference(*args, state, chunk_size=4, activation=activation)
    assert_close(y, y_ref, name="y")
    assert_close(st.weights[0], st_ref.weights[0], name="w0")


def test_batched_initial_weights_and_no_momentum():
    args, state, _ = make_inputs(3, 29, 2, 8, 2, batched_weights=True, momentum=False)
    y, st = neural_memory(*args, state, chunk_size=8)
    y_ref, _ = neural_memory_reference(*args, state, chunk_size=8)
    assert_close(y, y_ref)
    assert all(m.shape == w.shape for m, w in zip(st.momentum, st.weights))


def test_gates_at_bounds_are_exact():
    """η = 0, α = 1 and α = 0 are exact (no log/ratio underflow), gradients finite."""
    args, state, tensors = make_inputs(2, 33, 2, 8, 2, requires_grad=False)
    q, k, v, theta, eta, alpha = args
    eta = torch.where(torch.rand_like(eta) < 0.5, torch.zeros_like(eta), eta).requires_grad_()
    alpha = torch.where(torch.rand_like(alpha) < 0.1, torch.ones_like(alpha), alpha * 0)
    alpha.requires_grad_()
    y, _ = neural_memory(q, k, v, theta, eta, alpha, state, chunk_size=8)
    y_ref, _ = neural_memory_reference(q, k, v, theta, eta, alpha, state, chunk_size=8)
    assert_close(y, y_ref)
    ge, ga = torch.autograd.grad(y.sum(), (eta, alpha))
    ge_ref, ga_ref = torch.autograd.grad(y_ref.sum(), (eta, alpha))
    assert torch.isfinite(ge).all() and torch.isfinite(ga).all()
    assert_close(ge, ge_ref, name="grad eta")
    assert_close(ga, ga_ref, name="grad alpha")


@pytest.mark.parametrize("chunk_size", [1, 16])
def test_linear_no_momentum_is_gated_delta_rule(chunk_size):
    """L_M = 1, η = 0: W_t = (1-α_t) W_{t-1} - θ_t k_tᵀ(k_t W_{t0} - v_t), written out by hand."""
    B, T, H, D = 2, 40, 2, 8
    args, state, _ = make_inputs(B, T, H, D, 1, momentum=False)
    q, k, v, theta, eta, alpha = args
    eta = torch.zeros_like(eta)
    y, st = neural_memory(q, k, v, theta, eta, alpha, state, chunk_size=chunk_size)
    W = state.weights[0].expand(B, H, D, D).clone()
    anchor = W
    ys = []
    for t in range(T):
        if t % chunk_size == 0:
            anchor = W
        kt, vt = k[:, t].unsqueeze(-2), v[:, t].unsqueeze(-2)  # [B, H, 1, D]
        err = kt @ anchor - vt
        W = (1 - alpha[:, t, :, None, None]) * W - theta[:, t, :, None, None] * (kt.mT @ err)
        ys.append((q[:, t].unsqueeze(-2) @ W).squeeze(-2))
    assert_close(y, torch.stack(ys, 1))
    assert_close(st.weights[0], W)


@pytest.mark.parametrize("depth", [1, 2])
def test_two_halves_equal_whole(depth):
    args, state, _ = make_inputs(2, 96, 2, 8, depth)
    y, st = neural_memory(*args, state, chunk_size=16)
    first = [a[:, :48] for a in args]
    second = [a[:, 48:] for a in args]
    y1, st1 = neural_memory(*first, state, chunk_size=16)
    y2, st2 = neural_memory(*second, st1, chunk_size=16)
    assert_close(torch.cat([y1, y2], 1), y)
    for a, b in zip(st2.weights + st2.momentum, st.weights + st.momentum):
        assert_close(a, b)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("B,T,H,chunk,segment", [
    (1, 100, 1, 16, 32), (2, 70, 3, 16, 32), (1, 200, 2, 16, 48)])
def test_recomputed_segments_equal_whole(monkeypatch, depth, B, T, H, chunk, segment):
    """``recompute_segment``: output, final state and every input gradient equal the plain call's
    (float64, 1e-12), and each segment's forward runs again in the backward pass."""
    from titans.ops.neural_memory import api

    calls = []

    def counting(*a, **kw):
        calls.append(a[0].shape[1])
        return chunked(*a, **kw)

    chunked = api.chunked_neural_memory
    monkeypatch.setattr(api, "chunked_neural_memory", counting)
    torch.manual_seed(0)
    args, state, tensors = make_inputs(B, T, H, 6, depth, requires_grad=True)
    with torch.no_grad():
        args[3].mul_(0.2)  # θ ≤ 0.1: the random gates keep the deep memory finite
    outs, grads = {}, {}
    for seg in (None, segment):
        calls.clear()
        y, st = neural_memory(*args, state, chunk_size=chunk, recompute_segment=seg)
        outs[seg] = (y, *st.weights, *st.momentum)
        gen = torch.Generator().manual_seed(0)
        probes = [torch.randn(o.shape, generator=gen, dtype=F64) for o in outs[seg]]
        grads[seg] = torch.autograd.grad(sum((p * o).sum() for p, o in zip(probes, outs[seg])), tensors)
        lengths = [min(seg or T, T - i * (seg or T)) for i in range(-(-T // (seg or T)))]
        # the backward pass recomputes the segments last to first
        assert calls == (lengths + lengths[::-1] if seg else lengths)
    for i, (a, b) in enumerate(zip(outs[segment], outs[None])):
        assert torch.isfinite(b).all()
        assert_close(a, b, rtol=1e-12, name=f"output {i}")
    for i, (a, b) in enumerate(zip(grads[segment], grads[None])):
        assert_close(a, b, rtol=1e-12, name=f"grad {i}")


def test_recompute_segment_is_not_used_without_gradients(monkeypatch):
    from titans.ops.neural_memory import api

    calls = []
    chunked = api.chunked_neural_memory
    monkeypatch.setattr(api, "chunked_neural_memory", lambda *a, **kw: calls.append(1) or chunked(*a, **kw))
    args, state, _ = make_inputs(1, 64, 1, 4, 2)
    neural_memory(*args, state, chunk_size=16, recompute_segment=16)
    assert calls == [1]


def test_long_sequence_matches_reference():
    args, state, _ = make_inputs(1, 1000, 1, 4, 2, hidden=8)
    y, st = neural_memory(*args, state, chunk_size=64)
    y_ref, st_ref = neural_memory_reference(*args, state, chunk_size=64)
    assert_close(y, y_ref)
    assert_close(st.weights[1], st_ref.weights[1])


def test_empty_sequence_returns_state():
    args, state, _ = make_inputs(2, 0, 2, 8, 2)
    y, st = neural_memory(*args, state)
    assert y.shape == (2, 0, 2, 8)
    assert_close(st.weights[0], state.weights[0].expand_as(st.weights[0]))


def test_float32_close_to_float64():
    args, state, _ = make_inputs(2, 50, 2, 16, 2)
    y64, _ = neural_memory(*args, state, chunk_size=16)
    args32 = [a.float() for a in args]
    state32 = MemoryState(tuple(w.float() for w in state.weights), tuple(m.float() for m in state.momentum))
    y32, _ = neural_memory(*args32, state32, chunk_size=16)
    assert_close(y32.double(), y64, rtol=1e-4)


class TestValidation:
    def setup_method(self):
        self.args, self.state, _ = make_inputs(2, 10, 2, 8, 2)

    def call(self, *args, state=None, **kw):
        return neural_memory(*(args or self.args), state or self.state, **kw)

    @pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
    def test_bad_chunk_size(self, chunk_size):
        with pytest.raises(ValueError, match="chunk_size"):
            self.call(chunk_size=chunk_size)

    @pytest.mark.parametrize("segment", [0, -16, 24, 2.5, True])
    def test_bad_recompute_segment(self, segment):
        with pytest.raises(ValueError, match="recompute_segment"):
            self.call(chunk_size=16, recompute_segment=segment)

    def test_bad_activation(self):
        with pytest.raises(ValueError, match="activation"):
            self.call(activation="tanh")

    def test_bad_qkv_shape(self):
        q, k, v, *g = self.args
        with pytest.raises(ValueError, match="q, k, v"):
            self.call(q, k[:, :5], v, *g)
        with pytest.raises(ValueError, match="q must be a 4-D"):
            self.call(q[0], k, v, *g)

    def test_bad_dtype(self):
        q, k, v, *g = self.args
        with pytest.raises(ValueError, match="floating-point"):
            self.call(q.long(), k, v, *g)
        with pytest.raises(ValueError, match="one dtype"):
            self.call(q.float(), k, v, *g)

    def test_bad_gate_shape(self):
        q, k, v, th, et, al = self.args
        with pytest.raises(ValueError, match="eta must have shape"):
            self.call(q, k, v, th, et[:, :, :1], al)

    def test_bad_weights(self):
        w = self.state.weights
        with pytest.raises(ValueError, match="map back"):
            self.call(state=MemoryState((w[0],)))
        with pytest.raises(ValueError, match="heads"):
            self.call(state=MemoryState((w[0][:1], w[1][:1])))
        with pytest.raises(ValueError, match="MemoryState"):
            self.call(state=w)
        with pytest.raises(ValueError, match="momentum"):
            self.call(state=MemoryState(w, (self.state.momentum[0],)))

    def test_gate_ranges_opt_in(self):
        q, k, v, th, et, al = self.args
        self.call(q, k, v, th, et + 2, al)  # not checked by default
        with pytest.raises(ValueError, match="eta"):
            self.call(q, k, v, th, et + 2, al, check_gates=True)
        with pytest.raises(ValueError, match="theta"):
            self.call(q, k, v, -th - 1, et, al, check_gates=True)
