"""Forward+backward throughput and peak memory of whole language models (every variant).

A preset (default ``170m``, vocab 32000) at sequence lengths T with a fixed number of tokens per
step (B = tokens / T), bf16 autocast, loss.backward(). Per (T, variant): one warm-up step of a
one-layer copy (compiles FlexAttention for the shape, builds its block mask), then the full model:
the first step is timed and, while under ``--max-seconds``, ``--repeat`` more whose median is
reported. Activation checkpointing per block (``--checkpoint``, default on) is the same for every
variant. An OOM or error is recorded, not fatal; JSON is rewritten after every measurement.

    PYTHONPATH=src python3 benchmarks/bench_models.py --out benchmarks/results/models_h100.json
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, write_json  # noqa: E402

from titans.models import VARIANTS, TitansLM, count_parameters, get_config  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_step(model: TitansLM, batch: int, seq: int, device: str, dtype: torch.dtype):
    ids = torch.randint(0, model.config.vocab_size, (batch, seq + 1), device=device)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(ids[:, :-1], targets=ids[:, 1:]).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def timed(step) -> float:
    sync()
    t0 = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - t0


def measure(args, variant: str, seq: int, device: str, dtype: torch.dtype, models: dict) -> dict:
    batch = max(1, args.tokens // seq)
    overrides = {"attn_backend": args.attn_backend}
    cfg = get_config(f"{args.preset}-{variant}", vocab_size=args.vocab, **overrides)
    warm = TitansLM(get_config(f"{args.preset}-{variant}", vocab_size=args.vocab, n_layers=1,
                               **overrides)).to(device)
    warm.gradient_checkpointing = args.checkpoint
    t_warm = timed(make_step(warm, batch, seq, device, dtype))
    del warm
    if variant not in models:
        models[variant] = TitansLM(cfg).to(device)
    model = models[variant]
    model.gradient_checkpointing = args.checkpoint
    step = make_step(model, batch, seq, device, dtype)
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    first = timed(step)
    times = []
    start = time.perf_counter()
    for _ in range(args.repeat):
        if first + (time.perf_counter() - start) > args.max_seconds:
            break
        times.append(timed(step))
    seconds = statistics.median(times) if times else first
    peak = torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else float("nan")
    return {"variant": variant, "T": seq, "B": batch, "tokens_per_step": batch * seq,
            "n_layers": cfg.n_layers, "params": count_parameters(cfg),
            "tokens_per_s": batch * seq / seconds, "seconds": seconds, "first_step_seconds": first,
            "repeats": len(times), "warmup_seconds": t_warm, "peak_gb": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="170m")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--variants", nargs="+", default=["transformer", "mal", "mag", "mac", "lmm"],
                   choices=VARIANTS)
    p.add_argument("--seq-lens", nargs="+", type=int, default=[2048, 4096, 8192, 16384])
    p.add_argument("--tokens", type=int, default=16384, help="tokens per step")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--checkpoint", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--attn-backend", default="auto", choices=["auto", "sdpa", "flex"])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=6.0, help="per measurement")
    p.add_argument("--time-budget", type=float, default=1e9, help="skip what starts after this")
    p.add_argument("--out", default="benchmarks/results/models.json")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    results, models, t0 = [], {}, time.perf_counter()
    for seq in args.seq_lens:
        for variant in args.variants:
            if time.perf_counter() - t0 > args.time_budget:
                r = {"variant": variant, "T": seq, "skipped": "time budget"}
            else:
                try:
                    r = measure(args, variant, seq, device, dtype, models)
                except torch.OutOfMemoryError as e:
                    r = {"variant": variant, "T": seq, "error": f"OOM: {str(e)[:200]}"}
                except Exception as e:  # noqa: BLE001 - record and go on
                    r = {"variant": variant, "T": seq, "error": f"{type(e).__name__}: {str(e)[:300]}"}
                gc.collect()
                if device == "cuda":
                    torch.cuda.empty_cache()
            results.append(r)
            if "tokens_per_s" in r:
                print(f"T={seq:6d} {variant:12s} {r['tokens_per_s'] / 1e3:9.1f}K tok/s  "
                      f"{r['peak_gb']:6.1f} GB  ({r['seconds']:.2f}s/step, {r['repeats']} rep, "
                      f"first {r['first_step_seconds']:.2f}s, warm {r['warmup_seconds']:.1f}s)", flush=True)
            else:
                print(f"T={seq:6d} {variant:12s} {r.get('error') or r.get('skipped')}", flush=True)
            write_json(args.out, {"env": environment(), "config": vars(args), "results": results,
                                  "elapsed_s": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
