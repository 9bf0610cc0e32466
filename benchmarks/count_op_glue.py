"""Host-side ATen ops of one call of the fused memory op, with its Triton kernels stubbed out.

``recompute_segment`` (kernel-notes V9) cost a fixed 3.4–6.8 ms per segment on the H200 whatever the
segment's length (session 9, when each segment was three full calls of the op: forward, recomputed
forward, backward). Each call's PyTorch glue around the kernels (gate matrices, layout copies, state
snapshots, casts) is dispatched from the host; the gates are now formed once per call, by two fused
kernels (V10; ``--gates torch`` counts the PyTorch form). This counts that glue on the CPU: every
ATen op dispatched by ``triton_chunked_memory`` forward and by its backward, with the kernel
launches replaced by no-ops (so no GPU is needed, only the ``triton`` package to import the
kernels), and how many of them launch a kernel on a GPU (everything but views and allocations); and
the ATen ops of a whole ``neural_memory`` forward + backward with and without ``recompute_segment``
(``--segments``), run through the Triton path on the CPU (the interpreter's switch lets the backend
be chosen; no kernel runs).

    PYTHONPATH=src python3 benchmarks/count_op_glue.py --shapes 1x256,8x2048 --segments 0,256,512
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, write_json  # noqa: E402
from count_ops import OpCounter  # noqa: E402

# Ops that launch no kernel on a GPU: views, metadata and allocations.
NO_LAUNCH = {"view", "_unsafe_view", "_reshape_alias", "transpose", "reshape", "unflatten", "select",
             "slice", "as_strided", "expand", "unsqueeze", "squeeze", "permute", "t", "alias", "detach",
             "empty", "empty_like", "empty_strided", "split", "narrow", "unbind", "view_as", "diagonal",
             "lift_fresh", "resolve_conj", "resolve_neg", "_to_copy_noop"}


class _NoLaunch:
    """Stands in for a Triton kernel: ``kernel[grid](*args)`` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def _stub_kernels():
    """Replaces the memory kernels of ``function._config`` and the gate kernels by no-ops;
    yields the ``function`` module."""
    function = importlib.import_module("titans.ops.neural_memory.triton.function")
    gk = importlib.import_module("titans.ops.neural_memory.triton.gate_kernels")
    original = function._config, gk.gates_fwd_kernel, gk.gates_bwd_kernel

    def stubbed(depth, N, D, HD, act, prec, kernels=None):
        _, _, kw, shapes = original[0](depth, N, D, HD, act, prec, kernels)
        return (_NoLaunch(), _NoLaunch()), (_NoLaunch(), _NoLaunch()), kw, shapes

    function._config, gk.gates_fwd_kernel, gk.gates_bwd_kernel = stubbed, _NoLaunch(), _NoLaunch()
    try:
        yield function
    finally:
        function._config, gk.gates_fwd_kernel, gk.gates_bwd_kernel = original


def _inputs(B: int, T: int, H: int, D: int, hidden: int, batch_state: bool = False):
    """Leaf inputs of an L_M = 2 call: (q, k, v, θ, η, α), weights, momentum (per batch with
    ``batch_state``, the kernels' layout; else shared weights and no momentum, the op's)."""
    torch.manual_seed(0)
    leaf = {"requires_grad": True}
    qkv = [torch.randn(B, T, H, D, **leaf) for _ in range(3)]
    gates = [torch.rand(B, T, H, **leaf) for _ in range(3)]
    lead = (B, H) if batch_state else (H,)
    weights = [torch.randn(*lead, D, hidden, **leaf), torch.randn(*lead, hidden, D, **leaf)]
    momentum = [torch.zeros(*lead, D, hidden, **leaf), torch.zeros(*lead, hidden, D, **leaf)]
    return qkv + gates, weights, momentum if batch_state else None


def count_call(B: int, T: int, H: int, D: int, hidden: int, chunk: int, segment: int | None) -> int:
    """ATen ops of one ``neural_memory`` forward + backward on the Triton path (kernels stubbed)."""
    os.environ.setdefault("TRITON_INTERPRET", "1")  # lets backend="triton" run on the CPU
    from titans.ops import MemoryState, neural_memory  # noqa: PLC0415

    tokens_and_gates, weights, _ = _inputs(B, T, H, D, hidden)
    counter = OpCounter()
    with _stub_kernels(), counter:
        y, state = neural_memory(*tokens_and_gates, MemoryState(tuple(weights), None), chunk_size=chunk,
                                 backend="triton", recompute_segment=segment)
        (y.sum() + sum(w.sum() for w in state.weights)).backward()
    return sum(counter.counts.values())


def count(B: int, T: int, H: int, D: int, hidden: int, chunk: int) -> dict:
    tokens_and_gates, weights, momentum = _inputs(B, T, H, D, hidden, batch_state=True)
    with _stub_kernels() as function:
        fwd, bwd = OpCounter(), OpCounter()
        with fwd:
            y, new_w, new_s = function.triton_chunked_memory(*tokens_and_gates, weights, momentum, chunk,
                                                             "gelu")
        loss = y.sum() + sum(t.sum() for t in (*new_w, *new_s))
        with bwd:
            loss.backward()
    out = {}
    for name, counter in (("forward", fwd.counts), ("backward", bwd.counts)):
        launching = {op: n for op, n in counter.items() if op not in NO_LAUNCH}
        out[name] = {"aten_ops": sum(counter.values()), "launching": sum(launching.values()),
                     "by_op": dict(counter.most_common())}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="1x256,8x2048", help="comma-separated BxT")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--segments", default="0,256,512", help="recompute_segment values (0 = off) for the "
                   "whole-call count at the last shape")
    p.add_argument("--gates", choices=("auto", "triton", "torch"), default="auto",
                   help="who forms the gate inputs (TITANS_TRITON_GATES; auto = the fused kernels "
                   "at chunks <= 64, PyTorch at 128)")
    p.add_argument("--out", default=None, help="optional JSON")
    args = p.parse_args()
    os.environ["TITANS_TRITON_GATES"] = args.gates
    results = {"env": environment(), "config": vars(args), "shapes": {}}
    header = ("(B, T)", "fwd ops", "launch", "bwd ops", "launch")
    print(" ".join(f"{h:>{w}s}" for h, w in zip(header, (10, 8, 7, 8, 7))))
    for shape in args.shapes.split(","):
        B, T = (int(x) for x in shape.lower().split("x"))
        r = count(B, T, args.heads, args.head_dim, args.hidden, args.chunk)
        results["shapes"][shape] = r
        print(f"{f'({B}, {T})':>10s} {r['forward']['aten_ops']:8d} {r['forward']['launching']:7d} "
              f"{r['backward']['aten_ops']:8d} {r['backward']['launching']:7d}")
    B, T = (int(x) for x in args.shapes.split(",")[-1].lower().split("x"))
    results["whole_call"] = {"shape": [B, T], "aten_ops": {}}
    plain = None
    for segment in (int(x) for x in args.segments.split(",")):
        n = count_call(B, T, args.heads, args.head_dim, args.hidden, args.chunk, segment or None)
        results["whole_call"]["aten_ops"][str(segment)] = n
        plain = n if segment == 0 else plain
        extra = "" if segment == 0 or plain is None else \
            f"   ({(n - plain) / -(-T // segment):.0f} more per segment)"
        print(f"({B}, {T}) fwd+bwd, recompute_segment {segment or 'off'}: {n} ATen ops{extra}")
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
