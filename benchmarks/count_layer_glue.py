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

``--op-state`` (needs the ``triton`` package; its kernels are stubbed, nothing runs on a GPU) also
counts the op's own glue on the Triton path, called as the op benchmark calls it (one memory
shared over the batch, no momentum) and as the layer calls it (the memory expanded per sequence,
a zero momentum).
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
from count_ops import _stand_in  # noqa: E402  (the one-op stand-in for neural_memory)

import titans.memory.neural_memory as memory_module  # noqa: E402
from titans.memory import NeuralMemory, NeuralMemoryConfig  # noqa: E402


class ByteCounter(TorchDispatchMode):
    """Per ATen op (by name): calls and bytes of its tensor inputs and outputs, launching ops
    only; and the FLOPs of the matrix products (``mm``, ``addmm``, ``bmm``: 2·m·n·k each)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()
        self.bytes: collections.Counter[str] = collections.Counter()
        self.matmul_flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in NO_LAUNCH:
            tensors = [t for t in tree_leaves([args, kwargs or {}, out]) if torch.is_tensor(t)]
            self.calls[name] += 1
            self.bytes[name] += sum(t.numel() * t.element_size() for t in tensors)
            if name in ("mm", "addmm", "bmm"):
                self.matmul_flops += 2 * out.numel() * args[-1].shape[-2]  # [.., m, n] out, [.., k, n] right
        return out


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


def count_op_state(B: int, T: int, heads: int = 16, head_dim: int = 64, hidden: int = 256,
                   chunk: int = 64) -> dict[str, ByteCounter]:
    """Glue of one ``neural_memory`` forward + backward on the Triton path (kernels stubbed), bf16
    q/k/v, with the state as the op benchmark passes it and as the layer passes it."""
    os.environ.setdefault("TRITON_INTERPRET", "1")  # lets backend="triton" run on the CPU
    from count_op_glue import _stub_kernels  # noqa: PLC0415

    from titans.ops import MemoryState, neural_memory  # noqa: PLC0415
    from titans.ops.neural_memory.state import broadcast_state  # noqa: PLC0415

    torch.manual_seed(0)
    q, k, v = (torch.randn(B, T, heads, head_dim, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    gates = [torch.rand(B, T, heads, requires_grad=True) for _ in range(3)]
    weights = (torch.randn(heads, head_dim, hidden, requires_grad=True),
               torch.randn(heads, hidden, head_dim, requires_grad=True))
    shared = MemoryState(weights, None)
    states = {"shared, no momentum (op benchmark)": shared,
              "expanded, zero momentum (layer)": MemoryState(*(tuple(t) for t in broadcast_state(shared, B)))}
    out = {}
    for name, state in states.items():
        counter = ByteCounter()
        with _stub_kernels(), counter:
            y, _ = neural_memory(q, k, v, *gates, state, chunk_size=chunk, backend="triton")
            torch.autograd.grad(y.float().pow(2).sum(), [q, k, v, *gates, *weights])
        out[name] = counter
    return out


def _summary(c: ByteCounter) -> dict:
    total = sum(c.bytes.values())
    return {"launching_ops": sum(c.calls.values()), "bytes": total,
            "by_op": {k: {"calls": c.calls[k], "bytes": v} for k, v in c.bytes.most_common()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="8x2048,1x16384", help="B x T, comma-separated")
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--copy-gbps", type=float, default=4174.0,
                   help="the copy ceiling to convert bytes to time (H200, session 14: 4,174 GB/s)")
    p.add_argument("--matmul-tflops", type=float, default=776.5,
                   help="the bf16 matmul ceiling (H200, session 14: 776.5 TFLOP/s)")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--op-state", action="store_true", help="also count the op's own glue with the "
                   "state as the op benchmark and as the layer pass it (needs the triton package)")
    p.add_argument("--out", default=None, help="optional JSON")
    args = p.parse_args()
    results = {}
    for shape in args.shapes.split(","):
        B, T = (int(v) for v in shape.split("x"))
        c = count(B, T, args.d_model, args.heads, args.chunk)
        total = sum(c.bytes.values())
        results[shape] = _summary(c) | {"ms_at_copy_ceiling": total / args.copy_gbps / 1e6,
                                        "matmul_flops": c.matmul_flops,
                                        "ms_at_matmul_ceiling": c.matmul_flops / args.matmul_tflops / 1e9}
        print(f"({B}, {T}): {results[shape]['launching_ops']} launching ops, {total / 1e9:.2f} GB "
              f"= {results[shape]['ms_at_copy_ceiling']:.2f} ms at {args.copy_gbps:,.0f} GB/s; matmuls "
              f"{c.matmul_flops / 1e12:.3f} TFLOP = {results[shape]['ms_at_matmul_ceiling']:.2f} ms at "
              f"{args.matmul_tflops:.0f} TFLOP/s")
        for k, v in c.bytes.most_common(args.top):
            print(f"    {k:24s} {c.calls[k]:4d} calls {v / 1e9:7.3f} GB")
        if args.op_state:
            for name, c in count_op_state(B, T, args.heads, args.d_model // args.heads,
                                          4 * args.d_model // args.heads, args.chunk).items():
                summary = results[shape].setdefault("op_glue", {})[name] = _summary(c)
                print(f"    op glue, {name}: {summary['launching_ops']} launching ops, "
                      f"{summary['bytes'] / 1e9:.2f} GB")
    if args.out:
        write_json(args.out, {"env": environment(), "config": vars(args), "results": results})


if __name__ == "__main__":
    main()
