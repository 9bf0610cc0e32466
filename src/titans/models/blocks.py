"""Shared pieces: persistent memory tokens, SwiGLU MLP, the MAC/MAG gate and the residual block."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


class PersistentMemory(nn.Module):
    """N_p learnable, input-independent tokens (Titans §3.3), in the space of the block's
    normalised input (so initialised ~ N(0, 1), the scale RMSNorm gives the real tokens)."""

    def __init__(self, n: int, d_model: int):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(n, d_model))

    def forward(self, like: Tensor) -> Tensor:
        """``[B, N_p, d_model]`` in the batch size and dtype of ``like`` ``[B, T, d_model]``."""
        return self.tokens.to(like.dtype).unsqueeze(0).expand(like.shape[0], -1, -1)


class RMSNormF32(nn.RMSNorm):
    """RMSNorm computed in the wider of the input's and the weight's dtype (float32 for a bf16
    input under autocast), returned in the input's dtype. For norms whose input comes out of a
    matmul under autocast: ``nn.RMSNorm`` on a bf16 input with a float32 weight misses PyTorch's
    fused kernel (a warning and several elementwise kernels per call)."""

    def forward(self, x: Tensor) -> Tensor:
        work = torch.promote_types(x.dtype, self.weight.dtype if self.weight is not None else x.dtype)
        return F.rms_norm(x.to(work), self.normalized_shape, self.weight, self.eps).to(x.dtype)


class SwiGLU(nn.Module):
    """``W_down (SiLU(x W_gate) ⊙ x W_up)``."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)


class Gate(nn.Module):
    """The non-linear gate ⊗ of MAC and MAG: ``W_o (RMSNorm_y(y) ⊙ σ(RMSNorm_m(m)))`` — both branches
    normalised with learnable vector weights, then a non-linearity σ (sigmoid by default)."""

    def __init__(self, d_model: int, eps: float, activation: str = "sigmoid"):
        super().__init__()
        self.norm_y = RMSNormF32(d_model, eps=eps)
        self.norm_m = RMSNormF32(d_model, eps=eps)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.act = torch.sigmoid if activation == "sigmoid" else F.silu

    def forward(self, y: Tensor, m: Tensor) -> Tensor:
        return self.proj(self.norm_y(y) * self.act(self.norm_m(m)).to(y.dtype))


def detach_cache(cache: Any) -> Any:
    return None if cache is None else cache.detach()


class Block(nn.Module):
    """``x + mixer(norm(x))`` then ``x + SwiGLU(norm(x))``; ``mixer`` returns (y, cache)."""

    def __init__(self, config: ModelConfig, mixer: nn.Module):
        super().__init__()
        self.norm1 = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mixer = mixer
        self.norm2 = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mlp = SwiGLU(config.d_model, config.ffn_dim)

    def forward(self, x: Tensor, cache: Any = None, use_cache: bool = True) -> tuple[Tensor, Any]:
        """Returns the new cache only when ``use_cache`` (a training step returns no views of
        internal tensors, which wrappers such as FSDP would hook)."""
        y, cache = self.mixer(self.norm1(x), cache, need_cache=use_cache)
        x = x + y
        return x + self.mlp(self.norm2(x)), (cache if use_cache else None)
