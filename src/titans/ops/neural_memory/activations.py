"""Memory-MLP activations and their derivatives, written with differentiable torch ops.

The derivative is needed inside the forward pass (the inner gradient of the memory loss), and
the outer model differentiates through it again, so it must itself be built from autograd ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_grad(z: Tensor) -> Tensor:
    # d/dz [z * Phi(z)] = Phi(z) + z * phi(z)   (exact, erf-based GELU)
    cdf = 0.5 * (1.0 + torch.erf(z * _INV_SQRT2))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT2PI
    return cdf + z * pdf


def _silu_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _relu_grad(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


def _identity_grad(z: Tensor) -> Tensor:
    return torch.ones_like(z)


_TABLE: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "gelu": (lambda z: F.gelu(z, approximate="none"), _gelu_grad),
    "silu": (F.silu, _silu_grad),
    "relu": (F.relu, _relu_grad),
    "identity": (lambda z: z, _identity_grad),
}


def get_activation(name: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """``(act, act_grad)`` for one of ``gelu | silu | relu | identity``."""
    try:
        return _TABLE[name]
    except KeyError:
        raise ValueError(f"activation must be one of {tuple(_TABLE)}, got {name!r}") from None


__all__ = ["get_activation"]
