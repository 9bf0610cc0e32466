"""Configuration of the neural memory layer, validated at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from titans.ops.neural_memory.state import ACTIVATIONS, check_recompute_segment

OUTPUT_GATES = ("silu", "sigmoid", "none")
VALUE_NORMS = ("none", "rms")
MOMENTUM_FORMS = ("heavy_ball", "ema")
FORGET_TARGETS = ("zero", "init")


def default_theta_max(depth: int, chunk_size: int, hidden_dim: int, theta_scale: float) -> float:
    """θ_max that keeps the chunked inner gradient step stable: ``scale / (chunk · hidden)`` for
    a deep memory (hidden activations have squared norm ∝ hidden_dim), ``min(1, scale / chunk)``
    for a linear memory on unit-norm keys (1 = the exact delta rule's largest stable step)."""
    if depth == 1:
        return min(1.0, theta_scale / chunk_size)
    return theta_scale / (chunk_size * hidden_dim)


@dataclass
class NeuralMemoryConfig:
    """Neural long-term memory layer (Titans §3.1, §4.4).

    d_model: model width. num_heads × head_dim is the memory width (head_dim defaults to
    d_model // num_heads). depth: memory MLP layers L_M (1 = linear matrix memory).
    hidden_dim: memory MLP hidden width (default ``expansion * head_dim``).
    theta_max: bound of the learning rate θ_t = theta_max · sigmoid(·). Default
    ``theta_scale / (chunk_size · hidden_dim)`` for a deep memory and
    ``min(1, theta_scale / chunk_size)`` for a linear one (theta_scale default 2): inside a
    chunk every token's gradient is taken at the chunk-start weights and summed, so the step
    grows with the chunk and with the hidden activations' squared norm (∝ hidden_dim); see
    docs/design.md, "Inner learning rate bound".
    theta_init, eta_init, alpha_init: gate values at initialisation (set through the projection
    biases), θ's as a fraction of theta_max.
    eta_max: bound of the momentum η_t = eta_max · sigmoid(·) (default 1: the paper's (0, 1)).
    With η → 1, θ at its bound and no decay — what a run of one repeated token can drive the
    gates to — the inner step diverges (docs/design.md); 0.9 bounds the repeated-token worst case
    with normalised values but not every case (a MAC layer on the MQAR probe still grew 4·10⁵×);
    ``momentum_form="ema"`` removes the amplification.
    momentum_form: ``"heavy_ball"`` (default, the paper's S_t = η_t S_{t−1} − θ_t ∇ℓ) or ``"ema"``
    (θ_t → θ_t (1 − η_t): S is an exponential average of −θ∇ℓ, SGD's momentum with dampening η,
    so the step on a steady gradient stays θ_t whatever η_t — the regime the θ bound was derived
    for — where heavy-ball's grows to θ_t / (1 − η_t); docs/design.md).
    momentum / weight_decay: ablation switches (False fixes η = 0 / α = 0).
    conv_kernel: causal depthwise conv after q/k/v (0 disables). output_gate: activation of the
    linear output gate applied after the output RMSNorm.
    value_norm: ``"rms"`` RMS-normalises each head's value vector (unit RMS, no scale) before
    the memory fits it; ``"none"`` (default) keeps the paper's raw values. Large values make the
    deep memory's inner step diverge on runs of repeated tokens (docs/design.md, "Inner learning
    rate bound"); the memory output is RMS-normalised anyway, so only the write strength changes.
    forget_target: what the forget gate α decays the memory towards: ``"zero"`` (default, the
    paper's ``M_t = (1 − α_t) M_{t−1} + S_t``) or ``"init"``, the learned initial memory M_0
    (``M_t = (1 − α_t) M_{t−1} + α_t M_0 + S_t``). With a small α the first keeps shrinking M_0
    long after the training length, so the state drifts past it (docs/design.md, "Forget
    target"); ``"init"`` keeps M_0 and forgets only what was written. Both memory paths take it
    (Triton: L_M = 1 and the V6 kernels at L_M = 2).
    recompute_segment: ``None`` (default) or a multiple of ``chunk_size``: training-time memory
    saving — the op runs in segments of this many tokens under activation checkpointing and
    recomputes each segment's forward in the backward pass (same outputs and gradients; one
    more forward of the op plus a fixed host cost per segment, so prefer long segments;
    docs/kernel-notes.md, V9).
    """

    d_model: int
    num_heads: int = 4
    head_dim: int | None = None
    depth: int = 2
    expansion: float = 4.0
    hidden_dim: int | None = None
    activation: str = "gelu"
    chunk_size: int = 64
    conv_kernel: int = 4
    theta_max: float | None = None
    theta_scale: float = 2.0
    theta_init: float = 0.1
    eta_init: float = 0.6
    eta_max: float = 1.0
    alpha_init: float = 0.01
    momentum: bool = True
    momentum_form: str = "heavy_ball"
    weight_decay: bool = True
    output_gate: str = "silu"
    value_norm: str = "none"
    learn_init: bool = True
    norm_eps: float = 1e-6
    recompute_segment: int | None = None
    forget_target: str = "zero"

    def __post_init__(self) -> None:
        def positive_int(name: str, value: object, allow_zero: bool = False) -> None:
            ok = isinstance(value, int) and not isinstance(value, bool) and (
                value >= 0 if allow_zero else value > 0)
            if not ok:
                kind = "a non-negative" if allow_zero else "a positive"
                raise ValueError(f"{name} must be {kind} int, got {value!r}")

        positive_int("d_model", self.d_model)
        positive_int("num_heads", self.num_heads)
        positive_int("depth", self.depth)
        positive_int("chunk_size", self.chunk_size)
        positive_int("conv_kernel", self.conv_kernel, allow_zero=True)
        if self.head_dim is None:
            if self.d_model % self.num_heads:
                raise ValueError(f"num_heads={self.num_heads} must divide d_model={self.d_model} "
                                 "(or set head_dim)")
            self.head_dim = self.d_model // self.num_heads
        positive_int("head_dim", self.head_dim)
        if self.hidden_dim is None:
            if not self.expansion > 0:
                raise ValueError(f"expansion must be > 0, got {self.expansion!r}")
            self.hidden_dim = max(1, int(round(self.expansion * self.head_dim)))
        positive_int("hidden_dim", self.hidden_dim)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.output_gate not in OUTPUT_GATES:
            raise ValueError(f"output_gate must be one of {OUTPUT_GATES}, got {self.output_gate!r}")
        if self.momentum_form not in MOMENTUM_FORMS:
            raise ValueError(f"momentum_form must be one of {MOMENTUM_FORMS}, got {self.momentum_form!r}")
        check_recompute_segment(self.recompute_segment, self.chunk_size)
        if self.forget_target not in FORGET_TARGETS:
            raise ValueError(f"forget_target must be one of {FORGET_TARGETS}, got {self.forget_target!r}")
        if self.value_norm not in VALUE_NORMS:
            raise ValueError(f"value_norm must be one of {VALUE_NORMS}, got {self.value_norm!r}")
        if not self.theta_scale > 0:
            raise ValueError(f"theta_scale must be > 0, got {self.theta_scale!r}")
        if self.theta_max is None:
            self.theta_max = default_theta_max(self.depth, self.chunk_size, self.hidden_dim,
                                               self.theta_scale)
        if not self.theta_max > 0:
            raise ValueError(f"theta_max must be > 0, got {self.theta_max!r}")
        for name in ("theta_init", "eta_init", "alpha_init"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
        if not 0.0 < self.eta_max <= 1.0:
            raise ValueError(f"eta_max must lie in (0, 1], got {self.eta_max!r}")
        if not self.eta_init < self.eta_max:
            raise ValueError(f"eta_init ({self.eta_init!r}) must be below eta_max ({self.eta_max!r})")

    @property
    def layer_dims(self) -> list[int]:
        """Memory MLP widths ``[d_0, ..., d_L]`` (``d_0 = d_L = head_dim``)."""
        return [self.head_dim] + [self.hidden_dim] * (self.depth - 1) + [self.head_dim]

    def to_dict(self) -> dict:
        return asdict(self)
