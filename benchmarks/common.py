"""Shared benchmark helpers: environment record, CUDA-event timing, peak memory, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def environment() -> dict:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # the library's switches in force (kernel version, precision, gate backend, ...)
        "titans_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("TITANS_")},
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env


def time_step(step: Callable[[], None], warmup: int = 2, repeat: int = 5, max_seconds: float = 30.0
              ) -> dict:
    """Median seconds of ``step`` (CUDA events on GPU) and peak memory in GB of one step."""
    cuda = torch.cuda.is_available()
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    budget_start = time.perf_counter()
    for _ in range(repeat):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        if time.perf_counter() - budget_start > max_seconds:
            break
    peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")
    return {"seconds": statistics.median(times), "peak_gb": peak, "repeats": len(times)}


def write_json(path: str | os.PathLike, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def retrieval_model(variant: str, d_model: int, n_layers: int, n_heads: int, chunk: int, segment: int,
                    vocab: int = 256, expansion: float | None = None):
    """The small byte-level models of the retrieval experiments (``experiments/task_training.py``
    shapes): ``tiny-{variant}`` at the given size; MAC with 16 persistent and 16 retrieved tokens."""
    from titans.models import TitansLM, get_config

    memory = {"chunk_size": chunk} if expansion is None else {"chunk_size": chunk, "expansion": expansion}
    extra = {"segment_len": segment, "n_persistent": 16, "n_retrieve": 16} if variant == "mac" else {}
    return TitansLM(get_config(f"tiny-{variant}", vocab_size=vocab, d_model=d_model, n_layers=n_layers,
                               n_heads=n_heads, memory=memory, **extra))
