"""``ModelConfig`` (one dataclass for every variant, validated) and the named presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from titans.memory import NeuralMemoryConfig

VARIANTS = ("mac", "mag", "mal", "lmm", "transformer")
ATTN_BACKENDS = ("auto", "sdpa", "flex")
GATE_ACTIVATIONS = ("sigmoid", "silu")
MAC_RETRIEVALS = ("prefix", "token")
MAC_WRITES = ("attention", "input")


@dataclass
class ModelConfig:
    """A language model of one variant (``mac | mag | mal | lmm | transformer``).

    Shared block: pre-norm RMSNorm → token mixer → residual; pre-norm RMSNorm → SwiGLU → residual.

    d_model, n_layers, n_heads (attention heads; head_dim defaults to d_model // n_heads).
    ffn_dim: SwiGLU hidden width (default 8/3·d_model rounded up to a multiple of 64).
    window: sliding-window length of the attention in MAG / MAL (and Transformer++ when set;
        None = full causal attention there). segment_len: MAC segment length C.
    n_persistent: persistent memory tokens N_p per layer (Titans variants; 0 disables).
    mac_retrieval: how MAC shows the attention what the memory holds (docs/models.md).
        ``prefix`` (default): ``n_retrieve`` tokens read with the queries of the last inputs
        before the segment, visible to the whole segment. ``token``: every token's own query
        ``M*_{t-1}(q_i)`` read from the memory as it stood before the segment (the paper's
        ``h_t`` made causal), one retrieved token beside each token.
    n_retrieve: MAC ``prefix`` retrieval: memory tokens N_l per segment (≤ segment_len).
    mac_write: what MAC writes into its memory (and reads back for the gate): ``attention``
        (default, the paper's M_t = M_{t-1}(y_t)) or ``input`` (the segment's input tokens, as the
        LMM and MAG do; a diagnostic of whether MAC's slow memory learning comes from writing y).
    mac_write_norm: MAC writes ``RMSNorm(y)`` into the memory instead of the raw attention
        output y (the paper's form, default). On the CPU recall probe it prevented a divergence
        of the per-token MAC but also stopped its learning; ``memory={"value_norm": "rms"}``
        prevented it and kept learning (docs/models.md).
    memory: overrides of :class:`~titans.memory.NeuralMemoryConfig` (``d_model`` is taken from
        here; ``num_heads`` defaults to n_heads), e.g. ``{"depth": 1, "momentum": False}``.
    gate_activation: the non-linearity σ of the MAC/MAG gate ``W_o (norm(y) ⊙ σ(norm(m)))``.
    attn_backend: ``auto`` (FlexAttention block masks on CUDA, masked SDPA otherwise), ``sdpa``,
        ``flex``.
    """

    variant: str
    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    head_dim: int | None = None
    ffn_dim: int | None = None
    tie_embeddings: bool = True
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    window: int | None = 512
    segment_len: int = 256
    n_persistent: int = 16
    n_retrieve: int | None = None
    mac_retrieval: str = "prefix"
    mac_write: str = "attention"
    mac_write_norm: bool = False
    memory: dict = field(default_factory=dict)
    gate_activation: str = "sigmoid"
    init_std: float = 0.02
    attn_backend: str = "auto"

    def __post_init__(self) -> None:
        def positive_int(name: str, allow_zero: bool = False, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            ok = isinstance(value, int) and not isinstance(value, bool) and (
                value >= 0 if allow_zero else value > 0)
            if not ok:
                kind = "a non-negative" if allow_zero else "a positive"
                raise ValueError(f"{name} must be {kind} int{' or None' if optional else ''}, "
                                 f"got {value!r}")

        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "segment_len"):
            positive_int(name)
        positive_int("n_persistent", allow_zero=True)
        for name in ("head_dim", "ffn_dim", "window", "n_retrieve"):
            positive_int(name, optional=True)
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model} "
                                 "(or set head_dim)")
            self.head_dim = self.d_model // self.n_heads
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even (rotary embeddings), got {self.head_dim}")
        if self.ffn_dim is None:
            self.ffn_dim = 64 * -(-(8 * self.d_model) // (3 * 64))
        if self.variant in ("mag", "mal") and self.window is None:
            raise ValueError(f"variant {self.variant!r} needs a sliding window: window must be a "
                             "positive int, got None")
        if self.n_retrieve is None:
            self.n_retrieve = min(self.segment_len, 16)
        if self.variant == "mac" and self.n_retrieve > self.segment_len:
            raise ValueError(f"n_retrieve={self.n_retrieve} must be <= segment_len={self.segment_len}")
        if self.mac_retrieval not in MAC_RETRIEVALS:
            raise ValueError(f"mac_retrieval must be one of {MAC_RETRIEVALS}, got {self.mac_retrieval!r}")
        if self.mac_write not in MAC_WRITES:
            raise ValueError(f"mac_write must be one of {MAC_WRITES}, got {self.mac_write!r}")
        if not isinstance(self.mac_write_norm, bool):
            raise ValueError(f"mac_write_norm must be a bool, got {self.mac_write_norm!r}")
        if self.gate_activation not in GATE_ACTIVATIONS:
            raise ValueError(f"gate_activation must be one of {GATE_ACTIVATIONS}, "
                             f"got {self.gate_activation!r}")
        if self.attn_backend not in ATTN_BACKENDS:
            raise ValueError(f"attn_backend must be one of {ATTN_BACKENDS}, got {self.attn_backend!r}")
        if not self.norm_eps > 0 or not self.rope_theta > 0 or not self.init_std > 0:
            raise ValueError("norm_eps, rope_theta and init_std must be > 0")
        if not isinstance(self.memory, dict):
            raise ValueError(f"memory must be a dict of NeuralMemoryConfig fields, got {self.memory!r}")
        allowed = {f.name for f in fields(NeuralMemoryConfig)} - {"d_model"}
        unknown = sorted(set(self.memory) - allowed)
        if unknown:
            raise ValueError(f"memory has unknown keys {unknown}; allowed: {sorted(allowed)}")
        mem = self.memory_config() if self.uses_memory else None
        if self.variant == "mac" and self.segment_len % mem.chunk_size:
            raise ValueError(f"segment_len={self.segment_len} must be a multiple of the memory "
                             f"chunk_size={mem.chunk_size} for MAC (each segment is written as whole "
                             "chunks, so the retrieval state is a chunk-boundary state)")

    @property
    def uses_memory(self) -> bool:
        return self.variant != "transformer"

    @property
    def uses_attention(self) -> bool:
        return self.variant != "lmm"

    @property
    def attn_window(self) -> int | None:
        """Sliding window of the attention (None = full causal; MAC uses segments instead)."""
        return None if self.variant == "mac" else self.window

    def memory_config(self) -> NeuralMemoryConfig:
        """The memory layer's config (its inner learning-rate bound defaults to the layer's
        chunk- and width-scaled θ_max, docs/design.md)."""
        return NeuralMemoryConfig(**{"d_model": self.d_model, "num_heads": self.n_heads, **self.memory})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# ---------------------------------------------------------------------------------------- presets
# Widths and heads follow the flash-linear-attention / Gated DeltaNet baselines (head_dim 64);
# the depth of each variant is solved so that the total parameter count (tied embeddings) is
# closest to the target for the requested vocabulary, unless n_layers is given explicitly.
SIZES: dict[str, dict] = {
    "tiny": dict(d_model=64, n_heads=4, n_layers=2, window=16, segment_len=16, n_persistent=4,
                 n_retrieve=4, memory={"chunk_size": 8, "expansion": 2.0}),
    "small": dict(d_model=384, n_heads=6, target=30e6, window=512, segment_len=256),
    "170m": dict(d_model=768, n_heads=12, target=170e6, window=1024, segment_len=512),
    "340m": dict(d_model=1024, n_heads=16, target=340e6, window=1024, segment_len=512),
    "400m": dict(d_model=1024, n_heads=16, target=400e6, window=1024, segment_len=512),
    "760m": dict(d_model=1536, n_heads=24, target=760e6, window=1024, segment_len=512),
}
PRESETS: tuple[str, ...] = tuple(f"{s}-{v}" for s in SIZES for v in VARIANTS)

# The paper's Table 5 ablations of the LMM: name → model-field overrides (``memory`` entries are
# merged into the memory configuration). Shared by the LM and S-NIAH experiments.
ABLATIONS: dict[str, dict] = {
    "lmm-linear": {"memory": {"depth": 1}},
    "lmm-noconv": {"memory": {"conv_kernel": 0}},
    "lmm-nomomentum": {"memory": {"momentum": False}},
    "lmm-nodecay": {"memory": {"weight_decay": False}},
    "lmm-nopersistent": {"n_persistent": 0},
}


def count_parameters(config: ModelConfig) -> int:
    """Exact parameter count of ``TitansLM(config)`` without allocating memory (meta device)."""
    import torch

    from .lm import TitansLM

    with torch.device("meta"):
        return TitansLM(config).num_parameters()


def get_config(name: str, vocab_size: int = 32000, **overrides) -> ModelConfig:
    """Preset ``f"{size}-{variant}"`` (``PRESETS``) with field overrides.

    For sizes with a parameter target the number of layers is the one whose count (at this
    vocabulary) is closest to the target, unless ``n_layers`` is overridden.
    """
    size, _, variant = name.partition("-")
    if size not in SIZES or variant not in VARIANTS:
        raise ValueError(f"unknown preset {name!r}; choose from {PRESETS}")
    spec = dict(SIZES[size])
    target = spec.pop("target", None)
    memory = {**spec.pop("memory", {}), **overrides.pop("memory", {})}
    base = {"variant": variant, "vocab_size": vocab_size, **spec, "memory": memory, **overrides}
    if variant == "transformer":
        # The baseline: no persistent tokens, full causal attention (both can be overridden).
        base["n_persistent"] = overrides.get("n_persistent", 0)
        base["window"] = overrides.get("window", None)
    if target is None or "n_layers" in overrides:
        return ModelConfig(**base)
    per_layer = count_parameters(ModelConfig(**{**base, "n_layers": 2})) - \
        count_parameters(ModelConfig(**{**base, "n_layers": 1}))
    fixed = count_parameters(ModelConfig(**{**base, "n_layers": 1})) - per_layer
    n_layers = max(1, round((target - fixed) / per_layer))
    return ModelConfig(**{**base, "n_layers": n_layers})
