"""Host-side ATen ops of one call of the fused memory op, with its Triton kernels stubbed out.

``recompute_segment`` (kernel-notes V9) costs a fixed 3.4–6.8 ms per segment on the H200 whatever
the segment's length: each segment is three calls of the op (forward, recomputed forward,
backward), and each call's PyTorch glue around the kernels (gate matrices, layout copies, state
snapshots, casts) is dispatched from the host. This counts that glue on the CPU: every ATen op
dispatched by ``triton_chunked_memory`` forward and by its backward, with the kernel launches
replaced by no-ops (so no GPU is needed, only the ``triton`` package to import the kernels), and
how many of them launch a kernel on a GPU (everything but views and allocations).

    PYTHONPATH=src python3 benchmarks/count_op_glue.py --shapes 1x256,8x2048 --out glue.json
"""

from __future__ import annotations

import argparse
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


def count(B: int, T: int, H: int, D: int, hidden: int, chunk: int) -> dict:
    function = importlib.import_module("titans.ops.neural_memory.triton.function")
    original = function._config

    def stubbed(depth, N, D, HD, act, prec, kernels=None):
        _, _, kw, shapes = original(depth, N, D, HD, act, prec, kernels)
        return (_NoLaunch(), _NoLaunch()), (_NoLaunch(), _NoLaunch()), kw, shapes

    torch.manual_seed(0)
    leaf = {"requires_grad": True}
    q, k, v = (torch.randn(B, T, H, D, **leaf) for _ in range(3))
    theta, eta, alpha = (torch.rand(B, T, H, **leaf) for _ in range(3))
    weights = [torch.randn(B, H, D, hidden, **leaf), torch.randn(B, H, hidden, D, **leaf)]
    momentum = [torch.zeros(B, H, D, hidden, **leaf), torch.zeros(B, H, hidden, D, **leaf)]
    function._config = stubbed
    try:
        fwd, bwd = OpCounter(), OpCounter()
        with fwd:
            y, new_w, new_s = function.triton_chunked_memory(q, k, v, theta, eta, alpha, weights, momentum,
                                                             chunk, "gelu")
        loss = y.sum() + sum(t.sum() for t in (*new_w, *new_s))
        with bwd:
            loss.backward()
    finally:
        function._config = original
    out = {}
    for name, counter in (("forward", fwd.counts), ("backward", bwd.counts)):
        launching = {op: n for op, n in counter.items() if op not in NO_LAUNCH}
        out[name] = {"aten_ops": sum(counter.values()), "launching": sum(launching.values()),
                     "by_op": dict(counter.most_common())}
    # A recomputed segment runs the forward twice (the second under grad) and the backward once.
    out["per_recomputed_segment"] = {
        key: 2 * out["forward"][key] + out["backward"][key] for key in ("aten_ops", "launching")}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="1x256,8x2048", help="comma-separated BxT")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--out", default=None, help="optional JSON")
    args = p.parse_args()
    results = {"env": environment(), "config": vars(args), "shapes": {}}
    header = ("(B, T)", "fwd ops", "launch", "bwd ops", "launch", "per segment")
    print(" ".join(f"{h:>{w}s}" for h, w in zip(header, (10, 8, 7, 8, 7, 12))))
    for shape in args.shapes.split(","):
        B, T = (int(x) for x in shape.lower().split("x"))
        r = count(B, T, args.heads, args.head_dim, args.hidden, args.chunk)
        results["shapes"][shape] = r
        seg = r["per_recomputed_segment"]
        print(f"{f'({B}, {T})':>10s} {r['forward']['aten_ops']:8d} {r['forward']['launching']:7d} "
              f"{r['backward']['aten_ops']:8d} {r['backward']['launching']:7d} "
              f"{seg['aten_ops']:6d} / {seg['launching']:d}")
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
