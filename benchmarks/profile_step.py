"""Where does a training step's time go? One model, fwd+bwd+AdamW under bf16 autocast.

Times ``--steps`` steps (wall clock, synchronised), then profiles ``--profile-steps`` more with
``torch.profiler`` and writes the top operators by device time and by host time, the number of
kernel launches per step and the host-vs-device split to JSON (and prints the tables). The small
S-NIAH models are the default shape: a latency-bound step shows many launches and a device time
far below the wall time.

    PYTHONPATH=src python3 benchmarks/profile_step.py --variant mac --out mac_profile.json

``--variant memory-layer`` profiles one bare ``NeuralMemory`` layer instead (fwd+bwd of
``y.float().pow(2).mean()`` on random inputs, no optimizer), as ``bench_kernel.py`` times it, e.g.
its layer table's (8, 2K) row (where 8.2 ms of the 29.0 ms step lie outside the op, session 14):

    PYTHONPATH=src python3 benchmarks/profile_step.py --variant memory-layer --d-model 1024 \
        --n-heads 16 --batch 8 --seq-len 2048 --out layer_profile.json

``--compile`` profiles ``torch.compile`` of the model or layer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, retrieval_model, write_json  # noqa: E402

from titans.models import VARIANTS, count_parameters  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="mac", choices=[*VARIANTS, "memory-layer"])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=3)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--expansion", type=float, default=4.0)
    p.add_argument("--segment", type=int, default=256)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--compile", action="store_true", help="profile torch.compile(model)")
    p.add_argument("--out", default="benchmarks/results/profile_step.json")
    args = p.parse_args()
    result = profile(args)
    print(f"{args.variant}: {result['parameters'] / 1e6:.2f}M params, wall {result['wall_ms_per_step']:.1f} "
          f"ms/step, device busy {result['device_busy_ms_per_step']:.1f} ms/step, "
          f"{result['kernel_launches_per_step']:.0f} launches/step, "
          f"{result['tokens_per_second'] / 1e3:.1f}K tok/s")
    print(result.pop("table"))
    write_json(args.out, result)


def _memory_layer(args: argparse.Namespace) -> torch.nn.Module:
    from titans.memory import NeuralMemory, NeuralMemoryConfig

    return NeuralMemory(NeuralMemoryConfig(d_model=args.d_model, num_heads=args.n_heads,
                                           chunk_size=args.chunk, expansion=args.expansion))


def profile(args: argparse.Namespace) -> dict:
    """Time ``args.steps`` steps, profile ``args.profile_steps`` more; the result dict (its
    ``table`` entry: the profiler's operator table as text)."""

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    layer = args.variant == "memory-layer"
    if layer:
        model = _memory_layer(args).to(device)
        params = sum(p.numel() for p in model.parameters())
        x = torch.randn(args.batch, args.seq_len, args.d_model, device=device, requires_grad=True)
    else:
        model = retrieval_model(args.variant, args.d_model, args.n_layers, args.n_heads, args.chunk,
                                args.segment, args.vocab, args.expansion).to(device)
        params = count_parameters(model.config)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), device=device)
    forward = torch.compile(model) if args.compile else model

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            if layer:
                loss = forward(x, need_cache=False)[0].float().pow(2).mean()
            else:
                loss = forward(x[:, :-1], targets=x[:, 1:]).loss
        loss.backward()
        if layer:
            model.zero_grad(set_to_none=True)
            x.grad = None
        else:
            opt.step()
            opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    wall = (time.perf_counter() - t0) / args.steps

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.profile_steps):
            step()
        sync()
    events = prof.key_averages()
    n = args.profile_steps

    def rows(key: str) -> list[dict]:
        ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:args.top]
        return [{"name": e.key, "calls_per_step": e.count / n,
                 "device_ms_per_step": e.device_time_total / 1e3 / n,
                 "host_ms_per_step": e.cpu_time_total / 1e3 / n} for e in ranked]

    device_ms = sum(e.self_device_time_total for e in events) / 1e3 / n
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel",
                                                       "cudaLaunchKernelExC", "cuLaunchKernelEx")) / n
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    return {
        "environment": environment(), "config": vars(args), "parameters": params,
        "wall_ms_per_step": wall * 1e3, "device_busy_ms_per_step": device_ms,
        "kernel_launches_per_step": launches,
        "tokens_per_second": args.batch * args.seq_len / wall,
        "top_by_device": rows("device_time_total"), "top_by_host": rows("cpu_time_total"),
        "table": events.table(sort_by=sort, row_limit=args.top),
    }


if __name__ == "__main__":
    main()
