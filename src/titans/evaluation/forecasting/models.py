"""Forecasters for ``x [B, L, C] → y [B, H, C]`` (standardised values).

* :class:`LMMForecaster` — Simba-style: RevIN, channel independence, patching, then blocks of
  [pre-norm :class:`titans.memory.NeuralMemory` as the sequence mixer over patches + pre-norm
  EinFFT channel mixer], and a flatten-linear head. This is the paper's "LMM in the Simba
  framework" with Mamba replaced by the neural memory.
* :class:`DLinear` — moving-average trend/seasonal decomposition, one linear map each.
* :class:`PatchTST` — the same patch encoder with pre-norm Transformer blocks (bidirectional
  SDPA attention + GELU MLP) instead of memory/EinFFT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from titans.memory import NeuralMemory, NeuralMemoryConfig

MODELS = ("lmm", "dlinear", "patchtst")


class RevIN(nn.Module):
    """Reversible instance normalisation over the look-back window, per series and channel."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def norm(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x ``[B, L, C]`` → normalised x and the statistics ``[B, 1, C]`` to undo it."""
        mean = x.mean(1, keepdim=True).detach()
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + self.eps).detach()
        return (x - mean) / std * self.weight + self.bias, (mean, std)

    def denorm(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        mean, std = stats
        return (y - self.bias) / (self.weight + self.eps * self.eps) * std + mean


class Patcher(nn.Module):
    """``[B, L, C]`` → channel-independent patch tokens ``[B·C, N, d_model]``.

    The series is padded at the end by repeating its last value ``stride`` times, then cut into
    ``N = (L − patch_len) // stride + 2`` patches, each embedded linearly plus a learned position.
    """

    def __init__(self, seq_len: int, patch_len: int, stride: int, d_model: int, dropout: float):
        super().__init__()
        if not 0 < patch_len <= seq_len or stride <= 0:
            raise ValueError(f"need 0 < patch_len ({patch_len}) <= seq_len ({seq_len}) and stride > 0")
        self.patch_len, self.stride = patch_len, stride
        self.num_patches = (seq_len - patch_len) // stride + 2
        self.embed = nn.Linear(patch_len, d_model)
        self.pos = nn.Parameter(torch.randn(self.num_patches, d_model) * 0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(x, "b l c -> (b c) l")
        x = torch.cat([x, x[:, -1:].expand(-1, self.stride)], dim=1)
        patches = x.unfold(1, self.patch_len, self.stride)  # [B·C, N, P]
        return self.drop(self.embed(patches) + self.pos)


class FlattenHead(nn.Module):
    """``[B·C, N, d]`` → ``[B, H, C]`` through one linear map of the flattened tokens."""

    def __init__(self, num_patches: int, d_model: int, pred_len: int, channels: int, dropout: float):
        super().__init__()
        self.channels = channels
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(num_patches * d_model, pred_len)

    def forward(self, z: Tensor) -> Tensor:
        y = self.proj(self.drop(self.norm(z).flatten(1)))  # [B·C, H]
        return rearrange(y, "(b c) h -> b h c", c=self.channels)


class EinFFT(nn.Module):
    """SiMBA's EinFFT channel mixer: FFT over the feature dimension, two block-diagonal complex
    linear maps (Einstein products) with a complex ReLU between, soft-shrinkage, inverse FFT."""

    def __init__(self, d_model: int, blocks: int = 4, shrink: float = 0.01):
        super().__init__()
        if d_model % blocks:
            raise ValueError(f"blocks={blocks} must divide d_model={d_model}")
        self.blocks, self.shrink = blocks, shrink
        bs = d_model // blocks
        scale = bs ** -0.5
        self.w1 = nn.Parameter(torch.randn(2, blocks, bs, bs) * scale)
        self.b1 = nn.Parameter(torch.zeros(2, blocks, bs))
        self.w2 = nn.Parameter(torch.randn(2, blocks, bs, bs) * scale)
        self.b2 = nn.Parameter(torch.zeros(2, blocks, bs))

    @staticmethod
    def _cmul(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        w, b = torch.complex(w[0], w[1]), torch.complex(b[0], b[1])
        return torch.einsum("...ki,kio->...ko", x, w) + b

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        xf = torch.fft.fft(x.float(), dim=-1, norm="ortho")
        xf = rearrange(xf, "... (k i) -> ... k i", k=self.blocks)
        h = self._cmul(xf, self.w1, self.b1)
        h = torch.complex(F.relu(h.real), F.relu(h.imag))
        h = self._cmul(h, self.w2, self.b2)
        h = torch.complex(F.softshrink(h.real, self.shrink), F.softshrink(h.imag, self.shrink))
        y = torch.fft.ifft(rearrange(h, "... k i -> ... (k i)"), dim=-1, norm="ortho").real
        return y.to(dtype)


class SimbaMemoryBlock(nn.Module):
    """x + Drop(NeuralMemory(LN x)); x + Drop(EinFFT(LN x)). ``[B, N, d] → [B, N, d]``.

    ``use_memory=False`` drops the memory sub-layer (ablation: no sequence mixing at all)."""

    def __init__(self, memory: NeuralMemoryConfig, dropout: float, fft_blocks: int,
                 use_memory: bool = True):
        super().__init__()
        d = memory.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.memory = NeuralMemory(memory) if use_memory else None
        self.mixer = EinFFT(d, fft_blocks)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.memory is not None:
            y, _ = self.memory(self.norm1(x))
            x = x + self.drop(y)
        return x + self.drop(self.mixer(self.norm2(x)))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: bidirectional multi-head SDPA attention and a GELU MLP."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b n (three h d) -> three b h n d", three=3,
                            h=self.n_heads)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(rearrange(a, "b h n d -> b n (h d)")))
        return x + self.drop(self.mlp(self.norm2(x)))


class _PatchForecaster(nn.Module):
    def __init__(self, seq_len: int, pred_len: int, channels: int, d_model: int, patch_len: int,
                 stride: int, dropout: float, head_dropout: float, revin: bool):
        super().__init__()
        self.seq_len, self.pred_len, self.channels = seq_len, pred_len, channels
        self.revin = RevIN(channels) if revin else None
        self.patcher = Patcher(seq_len, patch_len, stride, d_model, dropout)
        self.head = FlattenHead(self.patcher.num_patches, d_model, pred_len, channels, head_dropout)
        self.blocks = nn.ModuleList()

    def forward(self, x: Tensor) -> Tensor:
        """x ``[B, L, C]`` → forecast ``[B, H, C]``."""
        if x.dim() != 3 or x.shape[1:] != (self.seq_len, self.channels):
            raise ValueError(f"x must be [B, {self.seq_len}, {self.channels}], got {tuple(x.shape)}")
        stats = None
        if self.revin is not None:
            x, stats = self.revin.norm(x)
        z = self.patcher(x)
        for block in self.blocks:
            z = block(z)
        y = self.head(z)
        return y if stats is None else self.revin.denorm(y, stats)


class LMMForecaster(_PatchForecaster):
    """Simba-style forecaster with the Titans neural memory as the sequence mixer."""

    def __init__(self, seq_len: int, pred_len: int, channels: int, d_model: int = 32, n_layers: int = 1,
                 num_heads: int = 2, memory_depth: int = 2, chunk_size: int = 12, patch_len: int = 16,
                 stride: int = 8, dropout: float = 0.2, head_dropout: float = 0.1, fft_blocks: int = 4,
                 revin: bool = True, use_memory: bool = True, **memory_overrides):
        super().__init__(seq_len, pred_len, channels, d_model, patch_len, stride, dropout, head_dropout,
                         revin)
        cfg = NeuralMemoryConfig(d_model=d_model, num_heads=num_heads, depth=memory_depth,
                                 chunk_size=chunk_size, **memory_overrides)
        self.blocks.extend(SimbaMemoryBlock(cfg, dropout, fft_blocks, use_memory) for _ in range(n_layers))


class PatchTST(_PatchForecaster):
    """PatchTST-style channel-independent patch Transformer."""

    def __init__(self, seq_len: int, pred_len: int, channels: int, d_model: int = 16, n_layers: int = 3,
                 n_heads: int = 4, d_ff: int = 128, patch_len: int = 16, stride: int = 8,
                 dropout: float = 0.3, head_dropout: float = 0.0, revin: bool = True):
        super().__init__(seq_len, pred_len, channels, d_model, patch_len, stride, dropout, head_dropout,
                         revin)
        self.blocks.extend(TransformerBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))


class DLinear(nn.Module):
    """Trend = moving average (kernel ``kernel``, edges replicated), seasonal = rest; one linear
    map L → H for each, shared by the channels."""

    def __init__(self, seq_len: int, pred_len: int, channels: int, kernel: int = 25):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd int, got {kernel!r}")
        self.seq_len, self.pred_len, self.channels, self.kernel = seq_len, pred_len, channels, kernel
        self.trend = nn.Linear(seq_len, pred_len)
        self.seasonal = nn.Linear(seq_len, pred_len)
        with torch.no_grad():  # start from the mean of the window, as the reference does
            self.trend.weight.fill_(1.0 / seq_len)
            self.seasonal.weight.fill_(1.0 / seq_len)

    def forward(self, x: Tensor) -> Tensor:
        """x ``[B, L, C]`` → forecast ``[B, H, C]``."""
        if x.dim() != 3 or x.shape[1:] != (self.seq_len, self.channels):
            raise ValueError(f"x must be [B, {self.seq_len}, {self.channels}], got {tuple(x.shape)}")
        xt = x.transpose(1, 2)  # [B, C, L]
        pad = (self.kernel - 1) // 2
        padded = torch.cat([xt[..., :1].expand(-1, -1, pad), xt, xt[..., -1:].expand(-1, -1, pad)], -1)
        trend = F.avg_pool1d(padded, self.kernel, stride=1)
        y = self.trend(trend) + self.seasonal(xt - trend)
        return y.transpose(1, 2)


def build_model(name: str, seq_len: int, pred_len: int, channels: int, **kwargs) -> nn.Module:
    """One of :data:`MODELS` with keyword overrides of its constructor defaults."""
    classes = {"lmm": LMMForecaster, "dlinear": DLinear, "patchtst": PatchTST}
    if name not in classes:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    return classes[name](seq_len, pred_len, channels, **kwargs)
