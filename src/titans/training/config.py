"""Configuration of a training run (one dataclass, validated before any work starts).

``--config`` is a model preset name (``"{size}-{variant}"``, e.g. ``tiny-mac``: model preset plus
the training defaults of its size from :data:`SIZE_DEFAULTS`) or a JSON file holding any
:class:`TrainConfig` fields (``model`` names the preset, ``model_overrides`` changes it).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
PARALLEL = ("ddp", "fsdp")
NONFINITE_GRADS = ("raise", "skip")

# Training defaults per model size. The paper's recipe (lr 4e-4, weight decay 0.1, 4K length,
# 0.5M tokens a step) for the large presets; smaller, faster settings for tiny/small.
SIZE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": dict(seq_len=256, batch_size=16, global_batch=16, lr=3e-3, warmup_steps=30, max_steps=300,
                 eval_interval=100, eval_batches=8, log_interval=10),
    "small": dict(seq_len=1024, batch_size=16, global_batch=32, lr=1e-3, warmup_steps=200,
                  max_steps=5000, eval_interval=500, eval_batches=16),
    "170m": dict(seq_len=4096, batch_size=8, global_batch=128, lr=4e-4, warmup_steps=1000, max_steps=30000),
    "340m": dict(seq_len=4096, batch_size=4, global_batch=128, lr=4e-4, warmup_steps=1000, max_steps=30000),
    "400m": dict(seq_len=4096, batch_size=4, global_batch=128, lr=4e-4, warmup_steps=1000, max_steps=30000),
    "760m": dict(seq_len=4096, batch_size=2, global_batch=128, lr=4e-4, warmup_steps=1000, max_steps=60000),
}


@dataclass
class TrainConfig:
    """One training run. Batch sizes count sequences of ``seq_len`` tokens.

    batch_size: micro-batch per process; global_batch: sequences per optimizer step over all
    processes and accumulation steps (grad_accum = global_batch / (batch_size · world_size)).
    train_data/val_data: file or folder (text, jsonl(.gz), token .npy/.bin); None = the embedded
    corpus. Without val_data, the last ``val_fraction`` of the training tokens is held out.
    stop_after: stop (with a checkpoint) after this step while keeping the max_steps schedule.
    nonfinite_grads: what a step whose gradient norm is inf/NaN does (the loss can be finite
    while the backward overflows): ``raise`` (default) stops before the optimizer touches the
    weights; ``skip`` drops the update (the data and the schedule move on) and stops only after
    ``max_skipped_steps`` consecutive skips.
    """

    model: str = "tiny-mac"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "byte"
    train_data: str | None = None
    val_data: str | None = None
    val_fraction: float = 0.01
    text_field: str = "text"
    max_train_tokens: int | None = None
    max_val_tokens: int | None = None
    seq_len: int = 256
    batch_size: int = 16
    global_batch: int = 16
    max_steps: int = 300
    stop_after: int | None = None
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    nonfinite_grads: str = "raise"
    max_skipped_steps: int = 10
    eval_interval: int = 100
    eval_batches: int = 8
    log_interval: int = 10
    ckpt_interval: int = 0
    keep_checkpoints: int = 2
    out_dir: str = "runs/tiny-mac"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    cuda_graph: bool = False         # capture forward + loss + backward per micro-batch (one GPU)
    parallel: str = "ddp"
    threads: int | None = None
    sample_tokens: int = 200
    sample_prompt: str = "The "
    progress: bool = True

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainConfig:
        size = name.split("-", 1)[0]
        if size not in SIZE_DEFAULTS or "-" not in name:
            raise ValueError(f"config preset must look like '<size>-<variant>' with size in "
                             f"{sorted(SIZE_DEFAULTS)}, got {name!r} (or pass a JSON file)")
        base = dict(SIZE_DEFAULTS[size], model=name, out_dir=f"runs/{name}")
        return cls.from_dict({**base, **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config field(s) {unknown}; known: {sorted(known)}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, spec: str, **overrides: Any) -> TrainConfig:
        """A preset name or a JSON file (its ``model`` field picks the size defaults)."""
        path = Path(spec)
        if spec.endswith(".json") or path.is_file():
            if not path.is_file():
                raise ValueError(f"config file {spec!r} does not exist")
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"config file {spec!r} must hold a JSON object")
            model = data.get("model", cls.model)
            size = model.split("-", 1)[0] if isinstance(model, str) else None
            base = dict(SIZE_DEFAULTS.get(size, {}), out_dir=f"runs/{model}")
            return cls.from_dict({**base, **data, **overrides})
        return cls.from_preset(spec, **overrides)

    def replace(self, **changes: Any) -> TrainConfig:
        cfg = replace(self, **changes)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""

        def check_int(name: str, minimum: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}{' or None' if optional else ''}, "
                                 f"got {v!r}")

        def check_float(name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
                raise ValueError(f"{name} must be a number in {interval}, got {v!r}")

        def check_choice(name: str, choices: tuple[str, ...]) -> None:
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")

        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a preset name such as 'tiny-mac', got {self.model!r}")
        if not isinstance(self.model_overrides, dict):
            raise ValueError(f"model_overrides must be a dict, got {self.model_overrides!r}")
        for name in ("tokenizer", "text_field", "out_dir", "sample_prompt"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("train_data", "val_data"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not Path(v).exists()):
                raise ValueError(f"{name} must be an existing file or folder (or None for the embedded "
                                 f"corpus), got {v!r}")
        if self.tokenizer != "byte" and not Path(self.tokenizer).exists():
            raise ValueError(f"tokenizer must be 'byte' or an existing tokenizer.json / folder, "
                             f"got {self.tokenizer!r}")
        check_float("val_fraction", 0.0, 0.5, lo_open=True)
        check_int("max_train_tokens", 2, optional=True)
        check_int("max_val_tokens", 2, optional=True)
        check_int("seq_len", 1)
        check_int("batch_size", 1)
        check_int("global_batch", 1)
        if self.global_batch % self.batch_size:
            raise ValueError(f"global_batch ({self.global_batch}) must be a multiple of batch_size "
                             f"({self.batch_size})")
        check_int("max_steps", 1)
        check_int("stop_after", 1, optional=True)
        if self.stop_after is not None and self.stop_after > self.max_steps:
            raise ValueError(f"stop_after ({self.stop_after}) must be <= max_steps ({self.max_steps})")
        check_float("lr", 0.0, 1.0, lo_open=True)
        check_float("min_lr_ratio", 0.0, 1.0)
        check_int("warmup_steps", 0)
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be < max_steps ({self.max_steps})")
        check_float("weight_decay", 0.0, 10.0)
        check_float("beta1", 0.0, 1.0, hi_open=True)
        check_float("beta2", 0.0, 1.0, hi_open=True)
        check_float("eps", 0.0, 1.0, lo_open=True)
        check_float("grad_clip", 0.0, float("inf"), lo_open=True)
        check_choice("nonfinite_grads", NONFINITE_GRADS)
        check_int("max_skipped_steps", 1)
        check_int("eval_interval", 0)
        check_int("eval_batches", 1)
        check_int("log_interval", 1)
        check_int("ckpt_interval", 0)
        check_int("keep_checkpoints", 1)
        check_int("seed", 0)
        check_int("threads", 1, optional=True)
        check_int("sample_tokens", 0)
        check_choice("device", DEVICES)
        check_choice("precision", PRECISIONS)
        check_choice("parallel", PARALLEL)
        for name in ("compile", "cuda_graph", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.cuda_graph and self.device == "cpu":
            raise ValueError("cuda_graph=true needs device 'auto' or 'cuda' (CUDA graphs), got device='cpu'")

    @property
    def final_step(self) -> int:
        return self.stop_after if self.stop_after is not None else self.max_steps

    def grad_accum(self, world_size: int) -> int:
        per_step = self.batch_size * world_size
        if self.global_batch % per_step:
            raise ValueError(f"global_batch ({self.global_batch}) must be a multiple of batch_size × "
                             f"world_size ({self.batch_size} × {world_size})")
        return self.global_batch // per_step


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then cosine to min."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, progress)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))
