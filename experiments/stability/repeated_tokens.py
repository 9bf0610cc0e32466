"""Inner-step stability of the deep memory on a run of one repeated token (the worst case for the
chunk-summed gradient: every token pushes the same way). Drives ``titans.ops.neural_memory``
directly at θ = the default θ_max, constant η and α, for 1024 tokens, and prints the weight norms
and the fit error ‖M(k) − v‖ for value scales 1 (unit-RMS entries) and 10.

    PYTHONPATH=src python3 experiments/stability/repeated_tokens.py
"""
from __future__ import annotations

import torch

from titans.memory.config import default_theta_max
from titans.ops import MemoryState, neural_memory


def main() -> None:
    torch.manual_seed(0)
    H, D, hidden, chunk, T = 1, 64, 256, 64, 1024
    theta_max = default_theta_max(2, chunk, hidden, 2.0)
    print(f"D {D}, hidden {hidden}, chunk {chunk}, θ = θ_max = {theta_max:.3g}, {T} tokens")
    print(f"{'|v|/√D':>7s} {'η':>5s} {'α':>7s} {'|W1| start→end':>20s} {'|W2| start→end':>20s} "
          f"{'‖M(k)−v‖ first→last (max)':>30s}")
    for scale in (1.0, 10.0):
        for eta in (0.6, 0.9, 0.99):
            for alpha in (0.0, 1e-4, 1e-2):
                k = torch.nn.functional.normalize(torch.randn(1, 1, H, D), dim=-1).expand(1, T, H, D)
                v = (torch.randn(1, 1, H, D) * scale).expand(1, T, H, D)
                w = (torch.randn(H, D, hidden), torch.randn(H, hidden, D) * hidden ** -0.5)
                full = torch.ones(1, T, H)
                y, state = neural_memory(k, k, v, theta_max * full, eta * full, alpha * full,
                                         MemoryState(w, None), chunk_size=chunk)
                err = (y - v).norm(dim=-1).flatten()
                print(f"{scale:7.0f} {eta:5.2f} {alpha:7.0e} "
                      f"{w[0].norm():8.1f} → {state.weights[0].norm():9.3g} "
                      f"{w[1].norm():8.1f} → {state.weights[1].norm():9.3g} "
                      f"{err[0]:9.3g} → {err[-1]:9.3g} ({err.max():.3g})")


if __name__ == "__main__":
    main()
