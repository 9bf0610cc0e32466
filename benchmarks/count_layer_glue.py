"""Device traffic of the memory layer's glue: everything of ``NeuralMemory`` but the op (CPU).

On the H200 (session 14) the layer's forward + backward at (8, 2K) took 29.0 ms, of which the op
``neural_memory`` alone 20.8 ms; the other 8.2 ms are more than GatedDeltaNet's whole layer. This
counts what that remainder has to move: the layer forward + backward under bf16 autocast with
the op replaced by a one-op stand-in, every ATen op that launches a kernel on a GPU (views and
allocations excluded), and the bytes each reads and writes (inputs + outputs; an upper bound on
its DRAM traffic, a lower bound where an op re-reads). ``bytes / copy ceiling`` is the time the
glue would take if it were purely bandwidth-bound.

    PYTHONPATH=src python3 benchmarks/count_layer_glue.py --shapes 8x2048,1x16384 \
        --out benchmarks/results/layer_glue_cpu.json
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, write_json  # noqa: E402
from count_op_glue import NO_LAUNCH  # noqa: E402

import titans.memory.neural_memory as memory_module  # noqa: E402
from titans.memory import NeuralMemory, NeuralMemoryConfig  # noqa: E402


class ByteCounter(TorchDispatchMode):
    """Per ATen op (by name): calls and bytes of its tensor inputs and outputs, launching ops only."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()
        self.bytes: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in NO_LAUNCH:
            tensors = [t for t in tree_leaves([args, kwargs or {}, out]) if torch.is_tensor(t)]
            self.calls[name] += 1
            self.bytes[name] += sum(t.numel() * t.element_size() for t in tensors)
        return out


def _stand_in(q, k, v, theta, eta, alpha, state, **_):
    return q * 1.0, state


def count(B: int, T: int, d_model: int = 1024, heads: int = 16, chunk: int = 64, **memory) -> ByteCounter:
    """Glue of one forward + backward of ``NeuralMemory`` (bf16 autocast, op stubbed) at (B, T)."""
    torch.manual_seed(0)
    layer = NeuralMemory(NeuralMemoryConfig(d_model=d_model, num_heads=heads, chunk_size=chunk, **memory))
    x = torch.randn(B, T, d_model, requires_grad=True)
    counter = ByteCounter()
    original, memory_module.neural_memory = memory_module.neural_memory, _stand_in
    try:
        with counter:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y, _ = layer(x, need_cache=False)
            y.float().sum().backward()
    finally:
        memory_module.neural_memory = original
    return counter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="8x2048,1x16384", help="B x T, comma-separated")
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--copy-gbps", type=float, default=4174.0,
                   help="the copy ceiling to convert bytes to time (H200, session 14: 4,174 GB/s)")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--out", default=None, help="optional JSON")
    args = p.parse_args()
    results = {}
    for shape in args.shapes.split(","):
        B, T = (int(v) for v in shape.split("x"))
        c = count(B, T, args.d_model, args.heads, args.chunk)
        total = sum(c.bytes.values())
        results[shape] = {"launching_ops": sum(c.calls.values()), "bytes": total,
                          "ms_at_copy_ceiling": total / args.copy_gbps / 1e6,
                          "by_op": {k: {"calls": c.calls[k], "bytes": v} for k, v in c.bytes.most_common()}}
        print(f"({B}, {T}): {results[shape]['launching_ops']} launching ops, {total / 1e9:.2f} GB "
              f"= {results[shape]['ms_at_copy_ceiling']:.2f} ms at {args.copy_gbps:,.0f} GB/s")
        for k, v in c.bytes.most_common(args.top):
            print(f"    {k:24s} {c.calls[k]:4d} calls {v / 1e9:7.3f} GB")
    if args.out:
        write_json(args.out, {"env": environment(), "config": vars(args), "results": results})


if __name__ == "__main__":
    main()
