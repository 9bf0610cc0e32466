"""Forward+backward throughput and peak memory of whole language models (every variant).

A preset (default ``170m``, vocab 32000) at sequence lengths T with a fixed number of tokens per
step (B = tokens / T), bf16 autocast, loss.backward(). Per (T, variant): one warm-up step of a
one-layer copy (compiles FlexAttention for the shape, builds its block mask), then the full model:
the first step is timed and, while under ``--max-seconds``, ``--repeat`` more whose median is
reported. Activation checkpointing per block (``--checkpoint``, default on) is the same for every
variant. An OOM or error is recorded, not fatal; JSON is rewritten after every measurement.

    PYTHONPATH=src python3 benchmarks/bench_models.py --out benchmarks/results/models_h100.json

``--mode train-cpu`` instead trains every variant at a preset (default tiny) for ``--steps`` on the
bytes of one Gutenberg book and logs the losses:

    PYTHONPATH=src python3 benchmarks/bench_models.py --mode train-cpu --preset tiny \
        --out benchmarks/results/models_cpu_train.json

``--mode decode-cpu`` times token-by-token decoding (median ms/token over the last 50 tokens before
each mark) and the cache size, early and late in a generation of ``--decode-tokens``.
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


def train_demo(args) -> None:
    """Train every variant at a preset (default tiny) on bytes of a Gutenberg book; log losses."""
    import gzip
    import json

    torch.manual_seed(0)
    torch.set_num_threads(1)
    with gzip.open(args.data, "rt") as f:
        text = json.loads(f.readline())["text"]
    data = torch.tensor(list(text.encode("utf-8")[: 400_000]), dtype=torch.long)
    split = int(0.9 * len(data))
    train, valid = data[:split], data[split:]
    results = []
    for variant in args.variants:
        torch.manual_seed(0)
        model = TitansLM(get_config(f"{args.preset}-{variant}", vocab_size=256))
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
        losses, t0 = [], time.perf_counter()
        for step in range(args.steps):
            for g in opt.param_groups:  # linear warm-up, cosine decay
                warm = min(1.0, (step + 1) / 20)
                g["lr"] = args.lr * warm * 0.5 * (1 + torch.cos(torch.tensor(step / args.steps * 3.14159)))
            idx = torch.randint(0, len(train) - args.train_len - 1, (args.batch,))
            batch = torch.stack([train[i:i + args.train_len + 1] for i in idx])
            loss = model(batch[:, :-1], targets=batch[:, 1:]).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            chunk = valid[: 4 * 1024 + 1]
            val = model(chunk[None, :-1], targets=chunk[None, 1:]).loss.item()
        r = {"variant": variant, "params": model.num_parameters(), "steps": args.steps,
             "loss_first20": sum(losses[:20]) / 20, "loss_last20": sum(losses[-20:]) / 20,
             "valid_loss_4k_bytes": val, "seconds": time.perf_counter() - t0, "losses": losses}
        results.append(r)
        print(f"{variant:12s} loss {r['loss_first20']:.3f} -> {r['loss_last20']:.3f}  valid(4K bytes, one "
              f"pass) {val:.3f}  {r['seconds']:.0f}s", flush=True)
        write_json(args.out, {"env": environment(), "config": vars(args), "results": results})


def cache_numel(obj) -> int:
    import dataclasses

    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, (list, tuple)):
        return sum(cache_numel(o) for o in obj)
    if dataclasses.is_dataclass(obj):
        return sum(cache_numel(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


@torch.no_grad()
def decode_demo(args) -> None:
    """Per-token decoding latency and cache size early and late in a long generation (CPU)."""
    torch.set_num_threads(1)
    results = []
    marks = sorted({100, args.decode_tokens // 2, args.decode_tokens})
    for variant in args.variants:
        torch.manual_seed(0)
        overrides = {"window": 64} if variant == "transformer-window" else {}
        name = variant.split("-")[0]
        model = TitansLM(get_config(f"{args.preset}-{name}", vocab_size=256, **overrides)).eval()
        out = model(torch.randint(0, 256, (1, 16)), use_cache=True)
        cache, times, row = out.cache, [], {"variant": variant}
        for t in range(1, args.decode_tokens + 1):
            t0 = time.perf_counter()
            out = model(torch.randint(0, 256, (1, 1)), cache=cache, use_cache=True)
            times.append(time.perf_counter() - t0)
            cache = out.cache
            if t in marks:
                window = times[-50:]
                row[f"ms_per_token_at_{t}"] = 1e3 * statistics.median(window)
                row[f"cache_numel_at_{t}"] = cache_numel(cache)
        results.append(row)
        print(row, flush=True)
        write_json(args.out, {"env": environment(), "config": vars(args), "results": results})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="throughput", choices=["throughput", "train-cpu", "decode-cpu"])
    p.add_argument("--decode-tokens", type=int, default=2000, help="decode-cpu: tokens generated")
    p.add_argument("--steps", type=int, default=300, help="train-cpu: optimizer steps")
    p.add_argument("--batch", type=int, default=8, help="train-cpu: sequences per step")
    p.add_argument("--train-len", type=int, default=64, help="train-cpu: tokens per sequence")
    p.add_argument("--lr", type=float, default=3e-3, help="train-cpu: peak learning rate")
    p.add_argument("--data", default=os.path.join(os.environ.get("TITANS_DATA", "../shared/data"),
                                                  "gutenberg", "test.jsonl.gz"))
    p.add_argument("--preset", default="170m")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--variants", nargs="+", default=["transformer", "mal", "mag", "mac", "lmm"],
                   choices=[*VARIANTS, "transformer-window"])
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
    if args.mode == "train-cpu":
        return train_demo(args)
    if args.mode == "decode-cpu":
        return decode_demo(args)
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
