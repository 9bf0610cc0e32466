"""Fused Triton kernels of the neural memory op (optional: needs the ``triton`` package).

``available()`` says whether Triton imports; ``unsupported_reason(...)`` says from the shape
alone why a call cannot take the Triton path (``None`` when it can); ``resource_reason(...)``
compiles the call's kernels once per configuration and device and says whether they fit
(cached); ``triton_chunked_memory`` runs them.

Support matrix (the static part; see docs/kernel-notes.md "Support matrix" for the shared
memory each configuration needs on sm_90):

- memory depth L_M ∈ {1, 2} (deeper: PyTorch path);
- head dim D ∈ {16, 32, 64, 128};
- chunk size N ∈ {16, 32, 64, 128}, except N = 128 with D = 128 at L_M = 2 (its backward
  needs 288 KiB of shared memory, an H100 SM has 227 KiB);
- L_M = 2: hidden width a multiple of 64 on the GPU (16 in the interpreter);
- state fp32 or narrower.

On top of that, the first call of each configuration compiles its kernels for the device at
hand and loads them (``resource_reason``): a configuration that does not fit there (another
GPU with less shared memory, or fp32 operands forced with ``TITANS_TRITON_PRECISION``) is
remembered, warned about once, and sent to the PyTorch path under ``backend="auto"``.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

from torch import Tensor

# triton is optional (never a package dependency) and imported only when a kernel first runs:
# its interpreter mode (TRITON_INTERPRET=1) is fixed when triton's own jit functions are built.
_HAVE_TRITON = importlib.util.find_spec("triton") is not None

MAX_DEPTH = 2
CHUNK_SIZES = (16, 32, 64, 128)
HEAD_DIMS = (16, 32, 64, 128)
# (depth, head dim, chunk) whose kernels need more than the 227 KiB of shared memory of an H100
# SM with bf16 operands (ahead-of-time compile for sm_90a, docs/kernel-notes.md "Support matrix").
TOO_LARGE = {(2, 128, 128)}
GPU_HIDDEN_TILE = 64  # 32/16-column tiles hit an illegal memory access on H100 (v2, V3) and H200
# (v6, V8); TITANS_TRITON_HIDDEN_TILE forces them in the interpreter and for --resources only

_RESOURCE_CACHE: dict[tuple, str | None] = {}  # configuration key -> None (fits) or the reason


VARIANTS = ("v6", "v4", "v2", "v5")  # kernel versions (docs/kernel-notes.md); TITANS_TRITON_KERNELS picks one


def variant() -> str:
    """Kernel version (docs/kernel-notes.md), environment ``TITANS_TRITON_KERNELS``: ``v6``
    (default; L_M = 1 and 2: forward and backward each split into a sequential state kernel and
    a query-pass kernel with one program per (batch·head, chunk); 1.3–1.8× faster than v4 at
    L_M = 2, ~1.7× the activation memory), ``v4`` (one program per (batch, head) with the chunk
    loop inside; smaller live set), ``v2`` (the first one), ``v5`` (main backward pass split in
    two) — v2/v4/v5 differ only in the L_M = 2 backward. All compute the same outputs."""
    v = os.environ.get("TITANS_TRITON_KERNELS", "v6")
    if v not in VARIANTS:
        raise ValueError(f"TITANS_TRITON_KERNELS must be one of {VARIANTS}, got {v!r}")
    return v


def available() -> bool:
    """Whether the ``triton`` package is installed."""
    return _HAVE_TRITON


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def static_reason(depth: int, D: int, chunk_size: int, hidden: int | None, on_gpu: bool = True) -> str | None:
    """The shape part of the support check (no triton, no device needed)."""
    if depth > MAX_DEPTH:
        return f"memory depth {depth} > {MAX_DEPTH}"
    if D not in HEAD_DIMS:
        return f"head dim {D} not in {HEAD_DIMS}"
    if chunk_size not in CHUNK_SIZES:
        return f"chunk_size {chunk_size} not in {CHUNK_SIZES}"
    if on_gpu and (depth, D, chunk_size) in TOO_LARGE:
        return (f"depth {depth}, head dim {D} with chunk_size {chunk_size} needs more shared memory "
                f"than a GPU SM has")
    tile = GPU_HIDDEN_TILE if on_gpu else 16
    if depth == 2 and hidden % tile:
        return f"hidden width {hidden} is not a multiple of {tile}"
    return None


def unsupported_reason(q: Tensor, weights: list[Tensor] | tuple[Tensor, ...], chunk_size: int) -> str | None:
    """Why the Triton path cannot run this call (from its shapes), or ``None`` when it can."""
    if not _HAVE_TRITON:
        return "triton is not installed"
    if not (q.is_cuda or interpreting()):
        return "inputs are not on a CUDA device (and TRITON_INTERPRET is not set)"
    hidden = weights[0].shape[-1] if len(weights) == 2 else None
    reason = static_reason(len(weights), q.shape[-1], chunk_size, hidden, on_gpu=q.is_cuda)
    if reason is not None:
        return reason
    if any(w.dtype.is_complex or w.dtype.itemsize > 4 for w in weights):
        return "state dtype wider than float32 (the kernels keep an fp32 state)"
    return None


def resource_key(q: Tensor, weights, chunk_size: int, activation: str, backward: bool,
                 target: bool = False) -> tuple:
    """What decides whether a configuration's kernels fit: device, depth, sizes, activation,
    operand precision, token dtype, whether the backward kernel is needed, and whether the
    L_M = 2 kernels carry a forget target (more live tiles)."""
    from .function import _launch_opts, hidden_tile, precision  # noqa: PLC0415 - imports triton

    depth, D = len(weights), q.shape[-1]
    hidden = weights[0].shape[-1] if depth == 2 else D
    import torch  # noqa: PLC0415

    cap = torch.cuda.get_device_capability(q.device) if q.is_cuda else None
    return (str(q.device), cap, depth, D, hidden, chunk_size, activation if depth == 2 else None,
            precision(q.dtype), tuple(sorted(_launch_opts(D, chunk_size).items())), q.dtype, backward,
            variant(), hidden_tile(hidden) if depth == 2 else None, target and depth == 2)


def resource_reason(q: Tensor, weights, chunk_size: int, activation: str = "gelu",
                    backward: bool = True, target: bool = False) -> str | None:
    """Whether this call's kernels build and load on its device: ``None`` if so, else why.

    Decided once per configuration (:func:`resource_key`) by compiling the kernels without
    launching them (the compiled kernels are Triton-cached and reused by the launch); a
    configuration that does not fit is warned about once. The interpreter and empty sequences
    need no check."""
    if interpreting() or not q.is_cuda or q.shape[1] == 0:
        return None
    key = resource_key(q, weights, chunk_size, activation, backward, target)
    B, T, H, D = q.shape
    depth = len(weights)
    hidden = weights[0].shape[-1] if depth == 2 else D

    def run_probe() -> str | None:
        from .function import probe  # noqa: PLC0415 - imports triton

        nc = -(-T // chunk_size)
        return probe(depth, chunk_size, D, hidden, activation, key[7], q.dtype, nc, nc * chunk_size,
                     B * H, backward, target=key[-1])

    what = (f"depth {depth}, head dim {D}, hidden {hidden}, chunk {chunk_size}, {key[7]} operands, "
            f"{'forget target, ' if key[-1] else ''}"
            f"{'forward+backward' if backward else 'forward'}, on {key[0]}")
    return decide(key, run_probe, what)


def decide(key: tuple, run_probe, what: str) -> str | None:
    """Cached decision for one configuration: ``run_probe()`` (``None`` = fits, else the reason)
    runs at the first call of ``key`` only; a reason is warned about once."""
    if key not in _RESOURCE_CACHE:
        reason = run_probe()
        _RESOURCE_CACHE[key] = reason
        if reason is not None:
            warnings.warn(f"titans neural_memory: the Triton kernels do not fit this configuration "
                          f"({what}): {reason}. backend='auto' uses the PyTorch path for it.",
                          RuntimeWarning, stacklevel=5)
    return _RESOURCE_CACHE[key]


def _from_function(name: str):
    """``function.<name>``, imported on the first call (``function`` imports triton)."""
    def call(*args, **kwargs):
        from . import function  # noqa: PLC0415 - imports triton

        return getattr(function, name)(*args, **kwargs)

    call.__name__ = name
    call.__doc__ = f"See :func:`titans.ops.neural_memory.triton.function.{name}`."
    return call


triton_chunked_memory = _from_function("triton_chunked_memory")
gate_inputs = _from_function("gate_inputs")
memory_with_gates = _from_function("memory_with_gates")


__all__ = ["available", "interpreting", "static_reason", "unsupported_reason", "resource_reason", "decide",
           "triton_chunked_memory", "gate_inputs", "memory_with_gates", "variant"]
