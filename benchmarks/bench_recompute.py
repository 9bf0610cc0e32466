"""Peak memory and time of one memory layer's forward + backward with and without recomputed
segments (``NeuralMemoryConfig.recompute_segment``), each setting in a fresh process.

On CUDA the peak is ``torch.cuda.max_memory_allocated`` above what the inputs and weights hold.
On the CPU it is the peak of live tensor bytes during the step, from the profiler's allocation
records (each op's own allocations minus frees, summed in time order); the time is taken from
a second step without the profiler. (The process's resident set is no measure of this: freed
blocks stay mapped.) With ``TRITON_INTERPRET=1 TITANS_NEURAL_MEMORY_BACKEND=triton`` (triton
installed) the CPU runs the fused kernels' host side — every buffer they allocate — with the
kernels interpreted (slow: ~40 s a step at 2K tokens).

    PYTHONPATH=src python3 benchmarks/bench_recompute.py --device cpu --shapes 1x2048,1x8192,1x16384 \\
        --d-model 256 --heads 4 --segments 0,256,1024 --out benchmarks/results/recompute_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, write_json  # noqa: E402


def cpu_peak_bytes(step) -> int:
    """Peak of live tensor bytes allocated during ``step()`` on the CPU (profiler records)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def measure(args: argparse.Namespace) -> dict:
    """One fwd + bwd (after one warm-up step on CUDA) of the layer in this process."""
    from titans.memory import NeuralMemory, NeuralMemoryConfig

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    B, T = (int(v) for v in args.shape.split("x"))
    cfg = NeuralMemoryConfig(d_model=args.d_model, num_heads=args.heads, depth=2, expansion=4.0,
                             chunk_size=args.chunk, recompute_segment=args.segment or None)
    layer = NeuralMemory(cfg).to(device)
    x = torch.randn(B, T, args.d_model, device=device, requires_grad=True)
    cuda = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            y, _ = layer(x, need_cache=False)
        y.float().pow(2).mean().backward()
        layer.zero_grad(set_to_none=True)
        x.grad = None

    step()  # warm-up (and, on the CPU, the step the profiler measures)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        peak = cpu_peak_bytes(step)
    start = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    seconds = time.perf_counter() - start
    return {"segment": args.segment, "B": B, "T": T, "seconds": seconds, "tokens_per_s": B * T / seconds,
            "peak_step_bytes": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shape", default="8x2048", help="BxT")
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--segments", default="0,256,512", help="recompute_segment values (0 = off)")
    p.add_argument("--shapes", default=None, help="several BxT, comma-separated (overrides --shape)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--segment", type=int, default=None, help=argparse.SUPPRESS)  # child process
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.segment is not None:
        print(json.dumps(measure(args)))
        return
    rows = []
    for shape in (args.shapes or args.shape).split(","):
        for seg in (int(s) for s in args.segments.split(",")):
            child = [sys.executable, __file__, *sys.argv[1:], "--shape", shape, "--segment", str(seg)]
            out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{shape:>8} recompute_segment {seg or 'off':>5}: {r['peak_step_bytes'] / 2**20:8.1f} MB "
                  f"peak in the step, {r['seconds'] * 1e3:8.1f} ms, {r['tokens_per_s'] / 1e3:7.1f}K tokens/s",
                  flush=True)
    if args.out:
        env = environment() | {k: v for k, v in os.environ.items() if k.startswith(("TITANS_", "TRITON_"))}
        write_json(args.out, {"env": env, "config": {k: v for k, v in vars(args).items() if k != "segment"},
                              "rows": rows})


if __name__ == "__main__":
    main()
