"""The in-chunk gate products (``chunked.segment_products`` / ``gate_matrices``): values and
float64 gradients against plain ``torch.cumprod`` autograd, exact at zero gates (η = 0 or
α = 1), and a backward that never asks the host anything (CUDA-graph capture; ``cumprod``'s
CUDA backward calls ``.item()``)."""

from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from titans.ops.neural_memory.chunked import gate_matrices, segment_products


def _plain_segment_products(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    ones = torch.ones(n, n, dtype=torch.bool)
    cols = torch.where(torch.tril(ones, diagonal=-1), x.unsqueeze(-1), torch.ones((), dtype=x.dtype))
    return torch.cumprod(cols, dim=-2).masked_fill(~torch.tril(ones), 0.0)


def _gates(shape, zeros: bool, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64)
    if zeros:  # exact zeros, in the first slot too, and two in a row
        x[..., 0] = 0.0
        x[..., 3:5] = 0.0
    return x.requires_grad_()


@pytest.mark.parametrize("n", [1, 2, 7, 16])
@pytest.mark.parametrize("zeros", [False, True])
def test_segment_products_match_cumprod_with_gradients(n, zeros):
    x = _gates((2, 3, n), zeros and n > 5)
    probe = torch.randn(2, 3, n, n, dtype=torch.float64)
    ours = segment_products(x)
    plain = _plain_segment_products(x)
    torch.testing.assert_close(ours, plain, rtol=0, atol=1e-15)
    (g_ours,) = torch.autograd.grad((ours * probe).sum(), x)
    (g_plain,) = torch.autograd.grad((plain * probe).sum(), x)
    torch.testing.assert_close(g_ours, g_plain, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(g_ours).all()


def test_segment_products_gradcheck_through_zeros():
    x = _gates((2, 9), zeros=True)
    assert torch.autograd.gradcheck(segment_products, (x,))


def test_gate_matrices_products_equal_cumprod():
    theta, eta, alpha = (_gates((2, 2, 16), zeros=z, seed=s) for s, z in ((0, False), (1, True), (2, False)))
    gm = gate_matrices(theta, eta, alpha)
    torch.testing.assert_close(gm.A, torch.cumprod(1.0 - alpha, -1), rtol=1e-14, atol=0)
    torch.testing.assert_close(gm.E, torch.cumprod(eta, -1), rtol=1e-14, atol=0)
    probe = torch.randn(2, 2, 16, dtype=torch.float64)
    for ours, plain in ((gm.A, torch.cumprod(1.0 - alpha, -1)), (gm.E, torch.cumprod(eta, -1))):
        got = torch.autograd.grad((ours * probe).sum(), (eta, alpha), allow_unused=True)
        want = torch.autograd.grad((plain * probe).sum(), (eta, alpha), allow_unused=True)
        for a, b in zip(got, want):
            if b is None:
                assert a is None or not a.any()
            else:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def test_gate_matrices_backward_uses_no_cumprod():
    """No ``cumprod`` in the backward: its CUDA backward syncs with the host (``.item()`` on
    "is any input zero?"), seen breaking CUDA-graph capture on an H200 (scripts/probe_graph_capture.py)."""
    theta, eta, alpha = (_gates((2, 2, 16), zeros=False, seed=s) for s in range(3))
    gm = gate_matrices(theta, eta, alpha)
    loss = sum(t.sum() for t in gm)
    ops = _Ops()
    with ops:
        loss.backward()
    assert "cumprod" not in ops.names and "_local_scalar_dense" not in ops.names
