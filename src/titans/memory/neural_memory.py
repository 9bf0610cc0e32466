"""``NeuralMemory``: the Titans long-term memory as a sequence layer.

x ─┬─ q/k/v projection → causal depthwise conv → SiLU (q, k ℓ2-normalised per head)
   ├─ gates θ (learning rate), η (momentum), α (forgetting), per token and head
   └─ output gate
y = out_proj( RMSNorm(neural_memory(q, k, v, θ, η, α)) ⊙ gate(x) )

The memory's initial weights are parameters (learned through the inner optimisation). A
:class:`NeuralMemoryCache` carries everything needed to continue a sequence: the memory state,
the weights at the start of the current chunk (gradients inside a chunk are taken there), the
position inside that chunk, and the convolution tails. Feeding a sequence in any pieces,
one token at a time included, gives the outputs of one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from titans.ops import MemoryState, memory_mlp, neural_memory
from titans.ops.neural_memory.chunked import chunked_neural_memory
from titans.ops.neural_memory.state import broadcast_state

from .config import NeuralMemoryConfig


@dataclass
class NeuralMemoryCache:
    """Streaming state of one :class:`NeuralMemory` layer (batch dimension B throughout).

    state:  memory weights and momentum after the last token seen.
    anchor: memory weights at the start of the current (unfinished) chunk, or None at a boundary.
    offset: tokens of the current chunk already consumed (0 ≤ offset < chunk_size).
    conv:   last ``conv_kernel - 1`` projected inputs of q ‖ k ‖ v: ``[B, 3C, K-1]``, or None.
    """

    state: MemoryState
    anchor: tuple[Tensor, ...] | None = None
    offset: int = 0
    conv: Tensor | None = None

    def detach(self) -> NeuralMemoryCache:
        """Cut the autograd history (truncated backprop when streaming long sequences)."""
        return NeuralMemoryCache(
            self.state.detach(),
            None if self.anchor is None else tuple(a.detach() for a in self.anchor),
            self.offset,
            None if self.conv is None else self.conv.detach(),
        )


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


_UNFUSED = (("qkv_proj.weight", ("q_proj.weight", "k_proj.weight", "v_proj.weight")),
            ("conv.weight", tuple(f"convs.{i}.weight" for i in range(3))),
            ("conv.bias", tuple(f"convs.{i}.bias" for i in range(3))))


def unfused_qkv_names(names) -> list[tuple[str, tuple[str, ...]]]:
    """(new name, old names) for every set of q/k/v projection or convolution entries among
    ``names`` saved before q/k/v were fused (``…q_proj.weight``/``k_proj``/``v_proj`` and
    ``…convs.{0,1,2}.*``); the new entry is the old ones concatenated along dim 0, in order."""
    names, found = set(names), []
    for name in sorted(names):
        for new, old in _UNFUSED:
            if name.endswith(old[0]):
                prefix = name[: len(name) - len(old[0])]
                group = tuple(prefix + o for o in old)
                if all(g in names for g in group):
                    found.append((prefix + new, group))
    return found


def upgrade_unfused_qkv(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """A whole model's flat weights with every pre-fusion q/k/v entry set replaced by the fused
    entry (for loaders that bypass ``load_state_dict``'s hooks, such as FSDP's)."""
    out = dict(weights)
    for new, old in unfused_qkv_names(out):
        out[new] = torch.cat([out.pop(k) for k in old])
    return out


def upgrade_unfused_qkv_optimizer(sd: dict) -> dict:
    """The same for an optimizer state keyed by parameter name (``{"state": {name: {...}},
    "param_groups": [{"params": [name, ...], ...}]}``): per-parameter tensors such as Adam's
    moments are concatenated, scalars (the step) taken from the first; the group lists the fused
    name where the q entry stood."""
    state, groups = dict(sd["state"]), [dict(g) for g in sd["param_groups"]]
    for new, old in unfused_qkv_names(state):
        parts = [state.pop(k) for k in old]
        state[new] = {key: (torch.cat([part[key] for part in parts])
                            if torch.is_tensor(value) and value.dim() > 0 else value)
                      for key, value in parts[0].items()}
        for g in groups:
            if old[0] in g["params"]:
                g["params"] = [new if n == old[0] else n for n in g["params"] if n not in old[1:]]
    return {**sd, "state": state, "param_groups": groups}


def _upgrade_state_dict(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load weights saved before q/k/v were fused (see :func:`unfused_qkv_names`)."""
    for new, old in _UNFUSED:
        keys = [prefix + o for o in old]
        if all(k in state_dict for k in keys):
            state_dict[prefix + new] = torch.cat([state_dict.pop(k) for k in keys])


class CausalDepthwiseConv(nn.Module):
    """Causal depthwise 1-D convolution over ``[B, T, C]`` with an optional carried tail."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.zeros(channels, 1, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        with torch.no_grad():  # start as identity plus a little mixing
            self.weight.normal_(0.0, 0.02)
            self.weight[:, 0, -1] += 1.0

    def forward(self, x: Tensor, tail: Tensor | None = None, channels: int | None = None
                ) -> tuple[Tensor, Tensor]:
        """x: ``[B, T, C']`` → (``[B, T, C']``, new tail ``[B, C', K-1]``), where the first
        ``C' = channels`` (default all) channels of the filter bank are used."""
        x = x.transpose(1, 2)  # [B, C', T]
        n = x.shape[1] if channels is None else channels
        if tail is None:
            tail = x.new_zeros(x.shape[0], n, self.kernel - 1)
        full = torch.cat([tail.to(x.dtype), x], dim=-1)
        y = F.conv1d(full, self.weight[:n].to(x.dtype), self.bias[:n].to(x.dtype), groups=n)
        return y.transpose(1, 2), full[..., full.shape[-1] - (self.kernel - 1):]


class NeuralMemory(nn.Module):
    """Titans neural long-term memory layer: ``[B, T, d_model] → [B, T, d_model]``."""

    def __init__(self, config: NeuralMemoryConfig):
        super().__init__()
        self.config = c = config
        H, D = c.num_heads, c.head_dim
        width = H * D
        # q, k and v in one matmul and one depthwise convolution (channels q ‖ k ‖ v).
        self.qkv_proj = nn.Linear(c.d_model, 3 * width, bias=False)
        self.conv = CausalDepthwiseConv(3 * width, c.conv_kernel) if c.conv_kernel > 1 else None
        self.register_load_state_dict_pre_hook(_upgrade_state_dict)
        self.gate_proj = nn.Linear(c.d_model, 3 * H)  # θ, η, α logits per head
        self.out_gate = nn.Linear(c.d_model, width, bias=False) if c.output_gate != "none" else None
        self.out_norm = nn.Parameter(torch.ones(H, D))
        self.out_proj = nn.Linear(width, c.d_model, bias=False)
        dims = c.layer_dims
        init = []
        for i in range(c.depth):
            # Unit-norm keys feed layer 0, so unit-variance weights give O(1) pre-activations.
            std = 1.0 if i == 0 else dims[i] ** -0.5
            init.append(torch.randn(H, dims[i], dims[i + 1]) * std)
        self.memory_init = nn.ParameterList(nn.Parameter(w, requires_grad=c.learn_init) for w in init)
        with torch.no_grad():
            nn.init.normal_(self.gate_proj.weight, 0.0, 0.02)
            biases = [_logit(c.theta_init), _logit(c.eta_init / c.eta_max), _logit(c.alpha_init)]
            self.gate_proj.bias.copy_(torch.tensor([b for b in biases for _ in range(H)]))

    # ------------------------------------------------------------------ pieces
    def initial_state(self) -> MemoryState:
        """The learned initial memory (shared over the batch), no momentum."""
        return MemoryState(tuple(self.memory_init), None)

    def _qkv(self, x: Tensor, conv_tail: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """q, k, v ``[B, T, H, D]`` and the new convolution tail (``[B, 3·H·D, K-1]`` or None)."""
        H = self.config.num_heads
        proj, new_tail = self.qkv_proj(x), None
        if self.conv is not None:
            proj, new_tail = self.conv(proj, conv_tail)
        q, k, v = rearrange(F.silu(proj), "b t (s h d) -> s b t h d", s=3, h=H)
        if self.config.value_norm == "rms":
            v = F.rms_norm(v.float(), (v.shape[-1],), eps=self.config.norm_eps).to(v.dtype)
        # Under autocast the ℓ2 norm runs in fp32 while v stays bf16: share one dtype.
        q, k = F.normalize(q, dim=-1).to(v.dtype), F.normalize(k, dim=-1).to(v.dtype)
        return q, k, v, new_tail

    def _q(self, x: Tensor, conv_tail: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Queries only: ``[B, T, H, D]`` and the query convolution's new tail (None without
        a convolution); ``conv_tail`` ``[B, H·D, K-1]`` continues it (None: no history)."""
        width = self.config.num_heads * self.config.head_dim
        proj, new_tail = F.linear(x, self.qkv_proj.weight[:width]), None
        if self.conv is not None:
            proj, new_tail = self.conv(proj, conv_tail, channels=width)
        q = rearrange(F.silu(proj), "b t (h d) -> b t h d", h=self.config.num_heads)
        # as in _qkv: the ℓ2 norm runs in fp32 under autocast
        return F.normalize(q, dim=-1).to(proj.dtype), new_tail

    def _gates(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c = self.config
        logits = self.gate_proj(x).float()
        th, et, al = logits.chunk(3, dim=-1)  # [B, T, H] each
        theta = c.theta_max * torch.sigmoid(th)
        eta = c.eta_max * torch.sigmoid(et) if c.momentum else torch.zeros_like(et)
        alpha = torch.sigmoid(al) if c.weight_decay else torch.zeros_like(al)
        if c.momentum_form == "ema":  # S_t = η S_{t-1} − (1 − η) θ ∇ℓ: steady step θ, not θ / (1 − η)
            theta = theta * (1.0 - eta)
        return theta, eta, alpha

    def _output(self, x: Tensor, y: Tensor) -> Tensor:
        """RMSNorm per head, linear gate, output projection. y: ``[B, T, H, D]``."""
        y = F.rms_norm(y.float(), (y.shape[-1],), eps=self.config.norm_eps) * self.out_norm
        y = rearrange(y, "b t h d -> b t (h d)").to(x.dtype)
        if self.out_gate is not None:
            g = self.out_gate(x)
            y = y * (F.silu(g) if self.config.output_gate == "silu" else torch.sigmoid(g))
        return self.out_proj(y)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, cache: NeuralMemoryCache | None = None, need_cache: bool = True
                ) -> tuple[Tensor, NeuralMemoryCache | None]:
        """Read and write the memory. x: ``[B, T, d_model]`` → (``[B, T, d_model]``, cache).

        Pass the returned cache back in to continue the same sequences. ``need_cache=False``
        (a training step) returns None for the cache and makes one op call where a sequence
        ending inside a chunk would otherwise take two (the second only to keep the weights at
        that chunk's start for streaming); the outputs are the same.
        """
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(f"x must be [B, T, d_model={self.config.d_model}], got {tuple(x.shape)}")
        b = self.config.chunk_size
        q, k, v, conv = self._qkv(x, None if cache is None else cache.conv)
        theta, eta, alpha = self._gates(x)
        state = self.initial_state() if cache is None else cache.state
        anchor, offset = (None, 0) if cache is None else (cache.anchor, cache.offset)
        if state.weights[0].dim() == 3 or state.momentum is None:
            state = MemoryState(*(tuple(t) for t in broadcast_state(state, x.shape[0])))
        T = x.shape[1]
        n_head = min(T, (b - offset) % b)  # tokens that finish a chunk begun earlier
        n_tail = (T - n_head) % b if need_cache else 0
        pieces = []
        seq = (q, k, v, theta, eta, alpha)
        target = self.initial_state().weights if self.config.forget_target == "init" else None
        if n_head:
            part = [t[:, :n_head] for t in seq]
            y, w, m, anchor = chunked_neural_memory(
                *part, list(state.weights), list(state.momentum), b, self.config.activation,
                anchor=list(anchor), offset=offset, forget_target=None if target is None else list(target))
            state, anchor = MemoryState(tuple(w), tuple(m)), tuple(anchor)
            offset = (offset + n_head) % b
            pieces.append(y)
        if T - n_head - n_tail:
            part = [t[:, n_head:T - n_tail] for t in seq]
            y, state = neural_memory(*part, state, chunk_size=b, activation=self.config.activation,
                                     recompute_segment=self.config.recompute_segment,
                                     forget_target=target)
            pieces.append(y)
        if n_tail:
            anchor = state.weights
            part = [t[:, T - n_tail:] for t in seq]
            y, state = neural_memory(*part, state, chunk_size=b, activation=self.config.activation,
                                     recompute_segment=self.config.recompute_segment,
                                     forget_target=target)
            offset = n_tail
            pieces.append(y)
        y = torch.cat(pieces, dim=1) if pieces else q.new_zeros(q.shape)
        if not need_cache:
            return self._output(x, y), None
        new_cache = NeuralMemoryCache(state, tuple(anchor) if offset else None, offset, conv)
        return self._output(x, y), new_cache

    def retrieve(self, x: Tensor, state: MemoryState | None = None) -> Tensor:
        """Read without writing: ``M*(q)`` for queries from x, with ``state`` (default: the
        initial memory). The query convolution sees only x (no carried history).
        x: ``[B, T, d_model]`` → ``[B, T, d_model]``.
        """
        return self.read(x, state)[0]

    def read(self, x: Tensor, state: MemoryState | None = None, conv_tail: Tensor | None = None
             ) -> tuple[Tensor, Tensor | None]:
        """:meth:`retrieve` with the query convolution continued from ``conv_tail`` (the
        previous call's returned tail, for reading a stream in pieces): → (``[B, T, d_model]``,
        new tail ``[B, H·D, K-1]`` or None)."""
        q, tail = self._q(x, conv_tail)
        state = self.initial_state() if state is None else state
        weights = [w.unsqueeze(0) if w.dim() == 3 else w for w in state.weights]  # [B|1, H, ...]
        qh = rearrange(q, "b t h d -> b h t d").to(weights[0].dtype)
        y = memory_mlp(qh, weights, self.config.activation)
        return self._output(x, rearrange(y, "b h t d -> b t h d")), tail
