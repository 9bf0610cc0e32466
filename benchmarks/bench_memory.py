"""Forward+backward throughput of the NeuralMemory layer vs titans-pytorch and SDPA attention.

d_model 1024, 16 heads × 64, L_M = 2 (expansion 4), chunk 64, bf16 autocast, 16K tokens a
step. Writes JSON (``--out``) and prints tokens/s and peak GB. Peers are optional imports
(``titans_pytorch`` 0.5.5); a missing peer or an OOM is recorded, not fatal.

    PYTHONPATH=src python3 benchmarks/bench_memory.py --out benchmarks/results/memory_h100.json
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, time_step, write_json  # noqa: E402

from titans.memory import NeuralMemory, NeuralMemoryConfig  # noqa: E402

SHAPES = [(8, 2048), (4, 4096), (2, 8192), (1, 16384)]


class SDPAttention(nn.Module):
    """Causal multi-head attention layer (projections + SDPA), the quadratic baseline."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(B, T, -1))


def build(name: str, d_model: int, heads: int, chunk: int) -> nn.Module:
    if name in ("ours", "ours-compiled"):
        from titans.ops.neural_memory.chunked import set_compile

        set_compile(name == "ours-compiled")
        return NeuralMemory(NeuralMemoryConfig(d_model=d_model, num_heads=heads, depth=2, expansion=4.0,
                                               chunk_size=chunk))
    if name == "sdpa":
        return SDPAttention(d_model, heads)
    from titans_pytorch import NeuralMemory as PeerMemory

    kw = {"batch_size": 64} if name == "titans-pytorch-bs64" else {}
    return PeerMemory(dim=d_model, chunk_size=chunk, heads=heads, dim_head=d_model // heads, **kw)


def run_case(name: str, B: int, T: int, args) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build(name, args.d_model, args.heads, args.chunk).to(device)
    x = torch.randn(B, T, args.d_model, device=device, requires_grad=True)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            out = model(x)
            y = out[0] if isinstance(out, tuple) else out
        y.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)
        x.grad = None

    r = time_step(step, warmup=args.warmup, repeat=args.repeat, max_seconds=args.max_seconds)
    r["tokens_per_s"] = B * T / r["seconds"]
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="ours,ours-compiled,titans-pytorch,titans-pytorch-bs64,sdpa")
    p.add_argument("--shapes", default=",".join(f"{b}x{t}" for b, t in SHAPES))
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--out", default="benchmarks/results/memory.json")
    args = p.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    results = []
    print(f"{'model':<22}{'B':>3}{'T':>7}{'tokens/s':>12}{'peak GB':>9}")
    for name in args.models.split(","):
        for B, T in shapes:
            row = {"model": name, "B": B, "T": T}
            try:
                row.update(run_case(name, B, T, args))
            except torch.cuda.OutOfMemoryError:
                row["error"] = "OOM"
            except Exception as e:  # a peer that fails to import/compile is recorded, not fatal
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            results.append(row)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if "error" in row:
                print(f"{name:<22}{B:>3}{T:>7}  {row['error'][:60]}")
            else:
                print(f"{name:<22}{B:>3}{T:>7}{row['tokens_per_s']:>12,.0f}{row['peak_gb']:>9.2f}")
            write_json(args.out, {"env": environment(), "config": vars(args), "results": results})


if __name__ == "__main__":
    main()
