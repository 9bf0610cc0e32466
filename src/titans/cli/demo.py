"""``titans demo``: the neural memory memorising an association stream at test time (CPU, seconds).

A stream of key→value pairs (random unit keys, random values) is written into fresh memories
by the op's own test-time gradient descent; afterwards each key is used as a query and recall is
the fraction of keys whose retrieved vector is nearest (cosine) to its own value among all values.
"""

from __future__ import annotations

import argparse
import time

import torch

from titans.ops import MemoryState, neural_memory


def association_recall(num_pairs: int, dim: int, depth: int, passes: int, theta: float, eta: float,
                       alpha: float, chunk_size: int, seed: int, activation: str = "gelu") -> dict:
    g = torch.Generator().manual_seed(seed)
    keys = torch.nn.functional.normalize(torch.randn(num_pairs, dim, generator=g), dim=-1)
    values = torch.randn(num_pairs, dim, generator=g)
    order = torch.cat([torch.randperm(num_pairs, generator=g) for _ in range(passes)])
    k = keys[order][None, :, None, :]  # [B=1, T, H=1, D]
    v = values[order][None, :, None, :]
    T = k.shape[1]
    gates = [torch.full((1, T, 1), x) for x in (theta, eta, alpha)]
    hidden = 2 * dim
    dims = [dim] + [hidden] * (depth - 1) + [dim]
    weights = tuple(torch.randn(1, dims[i], dims[i + 1], generator=g) * (1.0 if i == 0 else dims[i] ** -0.5)
                    for i in range(depth))
    _, state = neural_memory(k, k, v, *gates, MemoryState(weights), chunk_size=chunk_size,
                             activation=activation)
    zero = torch.zeros(1, num_pairs, 1)
    retrieved, _ = neural_memory(keys[None, :, None], keys[None, :, None], values[None, :, None],
                                 zero, zero, zero, state, chunk_size=chunk_size, activation=activation)
    retrieved = retrieved[0, :, 0]
    sims = torch.nn.functional.normalize(retrieved, dim=-1) @ torch.nn.functional.normalize(values, dim=-1).T
    recall = (sims.argmax(-1) == torch.arange(num_pairs)).float().mean().item()
    mse = (retrieved - values).pow(2).mean().item() / values.pow(2).mean().item()
    return {"recall": recall, "relative_mse": mse}


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    print(f"Association stream: {args.pairs} key→value pairs in R^{args.dim}, shown {args.passes}× "
          f"in random order, written by test-time gradient descent (chunk {args.chunk_size}).")
    print(f"{'memory':<34}{'recall':>8}{'rel. MSE':>10}{'time':>8}")
    # θ per depth: a 2-layer memory's gradient is larger by its hidden width (its
    # features are not unit-norm), so it takes a proportionally smaller step.
    settings = [
        ("linear (L_M=1), no momentum", 1, args.theta_linear, 0.0),
        ("linear (L_M=1), momentum 0.5", 1, args.theta_linear, 0.5),
        ("deep (L_M=2), no momentum", 2, args.theta_deep, 0.0),
        ("deep (L_M=2), momentum 0.5", 2, args.theta_deep, 0.5),
    ]
    for name, depth, theta, eta in settings:
        t0 = time.perf_counter()
        r = association_recall(args.pairs, args.dim, depth, args.passes, theta, eta, args.alpha,
                               args.chunk_size, args.seed)
        print(f"{name:<34}{r['recall']:>8.1%}{r['relative_mse']:>10.3f}{time.perf_counter() - t0:>7.2f}s")
    print(f"Chance recall is {1 / args.pairs:.1%}. With more pairs ({args.pairs}) than dimensions "
          f"({args.dim}) a linear memory cannot store them all; the deep memory can.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="memorise an association stream at test time and print recall")
    p.add_argument("--pairs", type=int, default=128)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--passes", type=int, default=16)
    p.add_argument("--theta-linear", type=float, default=0.1)
    p.add_argument("--theta-deep", type=float, default=0.01)
    p.add_argument("--alpha", type=float, default=0.0)
    p.add_argument("--chunk-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
