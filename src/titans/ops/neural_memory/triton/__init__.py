"""Fused Triton kernels of the neural memory op (optional: needs the ``triton`` package).

``available()`` says whether Triton imports; ``unsupported_reason(...)`` says why a call
cannot take the Triton path (``None`` when it can); ``triton_chunked_memory`` runs it.
"""

from __future__ import annotations

import importlib.util
import os

from torch import Tensor

# triton is optional (never a package dependency) and imported only when a kernel first runs:
# its interpreter mode (TRITON_INTERPRET=1) is fixed when triton's own jit functions are built.
_HAVE_TRITON = importlib.util.find_spec("triton") is not None

MAX_DEPTH = 2
CHUNK_SIZES = (16, 32, 64)  # 128 exceeds the 227 KiB of shared memory per SM (see docs)
HEAD_DIMS = (16, 32, 64, 128)


def available() -> bool:
    """Whether the ``triton`` package is installed."""
    return _HAVE_TRITON


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def unsupported_reason(q: Tensor, weights: list[Tensor] | tuple[Tensor, ...], chunk_size: int) -> str | None:
    """Why the Triton path cannot run this call, or ``None`` when it can."""
    if not _HAVE_TRITON:
        return "triton is not installed"
    if not (q.is_cuda or interpreting()):
        return "inputs are not on a CUDA device (and TRITON_INTERPRET is not set)"
    D = q.shape[-1]
    if len(weights) > MAX_DEPTH:
        return f"memory depth {len(weights)} > {MAX_DEPTH}"
    if D not in HEAD_DIMS:
        return f"head dim {D} not in {HEAD_DIMS}"
    if chunk_size not in CHUNK_SIZES:
        return f"chunk_size {chunk_size} not in {CHUNK_SIZES}"
    tile = 16 if interpreting() and not q.is_cuda else 64  # 32-column tiles crashed on H100
    if len(weights) == 2 and weights[0].shape[-1] % tile:
        return f"hidden width {weights[0].shape[-1]} is not a multiple of {tile}"
    if any(w.dtype.is_complex or w.dtype.itemsize > 4 for w in weights):
        return "state dtype wider than float32 (the kernels keep an fp32 state)"
    return None


def triton_chunked_memory(*args, **kwargs):
    """See :func:`titans.ops.neural_memory.triton.function.triton_chunked_memory`."""
    from .function import triton_chunked_memory as impl

    return impl(*args, **kwargs)


__all__ = ["available", "interpreting", "unsupported_reason", "triton_chunked_memory"]
