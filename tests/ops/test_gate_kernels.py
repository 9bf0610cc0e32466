"""The fused gate-input kernels (``triton/gate_kernels.py``) against their PyTorch form
(``function.chunk_gates``) and against it in float64: every output (A, c, G, ends, gn, sn) and
the gradients of θ, η, α under random cotangents on all six. Errors are ``max|a - b| / max|b|``.

Tolerances: 1e-5 in the CPU interpreter and on the GPU (the kernels' dots are exact fp32, seen
~2e-6 at most); gates include exact zeros (η = 0, α = 1), whose products must stay exact.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

HAVE_TRITON = importlib.util.find_spec("triton") is not None
CUDA = torch.cuda.is_available()
if HAVE_TRITON and not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are first decorated

interp = pytest.mark.skipif(not HAVE_TRITON or CUDA or os.environ.get("TRITON_INTERPRET") != "1",
                            reason="needs triton (interpreter) on a machine without CUDA")
gpu = pytest.mark.gpu


def random_gates(B, T, H, device="cpu", zeros=True):
    g = torch.Generator().manual_seed(B * 1000 + T * 10 + H)
    theta = torch.rand(B, T, H, generator=g) * 0.5
    eta = torch.rand(B, T, H, generator=g)
    alpha = torch.rand(B, T, H, generator=g) * 0.3
    if zeros:  # a stopped momentum and a full forget inside the first chunk
        eta[0, min(3, T - 1), 0] = 0.0
        alpha[0, min(5, T - 1), 0] = 1.0
    return [x.to(device).requires_grad_() for x in (theta, eta, alpha)]


def gates_and_grads(gates, chunk, backend, monkeypatch, dtype=torch.float32):
    """The six gate inputs and the gradients of θ, η, α (``backend`` forced: triton or torch)."""
    from titans.ops.neural_memory.triton import function

    monkeypatch.setenv(function.GATES_ENV, backend)
    leaves = [g.detach().to(dtype).requires_grad_() for g in gates]
    if dtype == torch.float64:  # the PyTorch form is dtype-generic; gate_inputs casts to fp32
        B, T, H = leaves[0].shape
        N = chunk
        pad = -(-T // N) * N - T
        th, et, al = (x.transpose(1, 2) for x in leaves)
        th, al = torch.nn.functional.pad(th, (0, pad)), torch.nn.functional.pad(al, (0, pad))
        et = torch.nn.functional.pad(et, (0, pad), value=1.0)
        out = [x.reshape(B * H, *x.shape[2:]) for x in function.chunk_gates(th, et, al, T, N)]
    else:
        out = function.gate_inputs(*leaves, chunk)
    cot = [torch.randn(x.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
           .to(x.device, x.dtype) for i, x in enumerate(out)]
    grads = torch.autograd.grad(sum((x * c).sum() for x, c in zip(out, cot)), leaves)
    return [x.detach().double().cpu() for x in (*out, *grads)]


NAMES = ["A", "c", "G", "ends", "gn", "sn", "dθ", "dη", "dα"]


def compare(got, want, tol, label):
    for name, a, b in zip(NAMES, got, want):
        assert a.shape == b.shape, (label, name)
        err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
        assert err < tol, f"{label} {name}: {err:.2e} >= {tol}"


CASES = [  # B, T, H, chunk
    (2, 40, 2, 16),  # T not a multiple of the chunk
    (1, 100, 1, 16),  # B = H = 1, 7 chunks
    (1, 64, 3, 32),  # whole chunks only
    (1, 70, 1, 64),  # the default chunk, one token into the second chunk
    (1, 1, 1, 16),  # one token
]


@interp
@pytest.mark.parametrize("B,T,H,chunk", CASES)
def test_interpreter_fused_gates_match_torch_and_float64(monkeypatch, B, T, H, chunk):
    gates = random_gates(B, T, H)
    fused = gates_and_grads(gates, chunk, "triton", monkeypatch)
    compare(fused, gates_and_grads(gates, chunk, "torch", monkeypatch), 1e-5, "vs torch fp32")
    compare(fused, gates_and_grads(gates, chunk, "torch", monkeypatch, torch.float64), 1e-5, "vs float64")


@pytest.mark.skipif(not HAVE_TRITON, reason="the Triton path's module imports triton")
def test_gate_backend_is_validated(monkeypatch):
    from titans.ops.neural_memory.triton import function

    monkeypatch.setenv(function.GATES_ENV, "cuda")
    with pytest.raises(ValueError, match="TITANS_TRITON_GATES must be one of"):
        function.gate_backend()
    monkeypatch.delenv(function.GATES_ENV)
    assert function.gate_backend() == "auto"


@interp
def test_forced_fused_gates_refuse_chunk_128(monkeypatch):
    from titans.ops.neural_memory.triton import function

    monkeypatch.setenv(function.GATES_ENV, "triton")
    with pytest.raises(ValueError, match="supports chunks up to 64, got 128"):
        function.gate_inputs(*random_gates(1, 130, 1), 128)


@interp
@pytest.mark.parametrize("grad,chunk,fused", [(False, 16, True), (True, 16, True), (False, 128, False),
                                              (True, 128, False)])
def test_auto_fuses_chunks_up_to_64(monkeypatch, grad, chunk, fused):
    """``auto`` (the default): the fused kernels at chunks ≤ 64, with or without a gradient (the
    measured win, V10 with the 16-warp backward); PyTorch at chunk 128. Both give the same gates."""
    from titans.ops.neural_memory.triton import function

    monkeypatch.delenv(function.GATES_ENV, raising=False)
    calls = []
    apply = function._GateInputsFn.apply
    monkeypatch.setattr(function._GateInputsFn, "apply", lambda *a: calls.append(1) or apply(*a))
    gates = random_gates(1, 130, 2)
    with torch.set_grad_enabled(grad):
        got = function.gate_inputs(*gates, chunk)
    assert bool(calls) == fused
    monkeypatch.setenv(function.GATES_ENV, "torch")
    with torch.no_grad():
        want = function.gate_inputs(*gates, chunk)
    compare([x.detach().double() for x in got], [x.double() for x in want], 1e-5, f"auto {grad} {chunk}")


@interp
def test_interpreter_memory_op_is_the_same_with_either_gate_backend(monkeypatch):
    """The whole Triton op (gates + memory kernels) with fused gates gives the PyTorch-gates
    outputs and gradients (exact fp32 dots: 1e-5)."""
    from titans.ops import MemoryState, neural_memory

    monkeypatch.setenv("TITANS_TRITON_PRECISION", "ieee")
    torch.manual_seed(0)
    B, T, H, D, hidden = 1, 50, 2, 16, 32
    leaves = [torch.randn(B, T, H, D) / D ** 0.5 for _ in range(3)] + random_gates(B, T, H)
    weights = (torch.randn(H, D, hidden) / D ** 0.5, torch.randn(H, hidden, D) / hidden ** 0.5)
    results = []
    for backend in ("torch", "triton"):
        monkeypatch.setenv("TITANS_TRITON_GATES", backend)
        xs = [x.detach().requires_grad_() for x in leaves]
        ws = [w.clone().requires_grad_() for w in weights]
        y, state = neural_memory(*xs, MemoryState(tuple(ws), None), chunk_size=16, backend="triton")
        loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum()
        loss = loss + sum(w.square().sum() for w in state.weights)
        results.append([y.detach(), *(w.detach() for w in state.weights),
                        *torch.autograd.grad(loss, xs + ws)])
    for a, b in zip(*results):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5


@gpu
@pytest.mark.parametrize("B,T,H,chunk", [(8, 2048, 16, 64), (1, 1000, 2, 16), (2, 333, 3, 32)])
def test_gpu_fused_gates_match_torch_and_float64(monkeypatch, B, T, H, chunk):
    gates = random_gates(B, T, H, device="cuda")
    fused = gates_and_grads(gates, chunk, "triton", monkeypatch)
    compare(fused, gates_and_grads(gates, chunk, "torch", monkeypatch), 1e-5, "vs torch fp32")
    compare(fused, gates_and_grads(gates, chunk, "torch", monkeypatch, torch.float64), 1e-5, "vs float64")
