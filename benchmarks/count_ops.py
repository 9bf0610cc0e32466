"""Host-side op count of one training step, without the memory op itself (CPU, no GPU needed).

Small Titans models are launch-bound on a GPU (``profile_step.py``: MAC makes ~8,400 kernel
launches a step and leaves the GPU idle ~45% of the time), so the number of ATen ops around the
memory op is a cost worth tracking. This counts every ATen op dispatched in a forward + backward
under bf16 autocast, with ``neural_memory`` replaced by a one-op stand-in (its own launches are
the fused kernel's business), and prints the total and the most frequent ops per model.

    PYTHONPATH=src python3 benchmarks/count_ops.py --variants mac lmm transformer

Counts on the CPU include the unfused SDPA-with-mask attention of the CPU path (one fused
kernel on a GPU), so they bound the GPU's launches from above for the attention part.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, retrieval_model, write_json  # noqa: E402

import titans.memory.neural_memory as memory_module  # noqa: E402
from titans.models import VARIANTS  # noqa: E402


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _stand_in(q, k, v, theta, eta, alpha, state, **_):
    return q * 1.0, state


def count(variant: str, args: argparse.Namespace) -> collections.Counter[str]:
    torch.manual_seed(0)
    model = retrieval_model(variant, args.d_model, args.n_layers, args.n_heads, args.chunk, args.segment)
    x = torch.randint(0, 256, (args.batch, args.seq_len + 1))
    counter = OpCounter()
    original, memory_module.neural_memory = memory_module.neural_memory, _stand_in
    try:
        with counter, torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x[:, :-1], targets=x[:, 1:]).loss
        with counter:
            loss.backward()
    finally:
        memory_module.neural_memory = original
    return counter.counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["mac", "lmm", "transformer"], choices=VARIANTS)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=3)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--segment", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--out", default=None, help="optional JSON")
    args = p.parse_args()
    results = {}
    for variant in args.variants:
        counts = count(variant, args)
        results[variant] = {"total": sum(counts.values()), "by_op": dict(counts.most_common())}
        top = ", ".join(f"{name} {n}" for name, n in counts.most_common(args.top))
        print(f"{variant:12s} {results[variant]['total']:6d} ops   ({top})")
    if args.out:
        write_json(args.out, {"environment": environment(), "config": vars(args), "results": results})


if __name__ == "__main__":
    main()
