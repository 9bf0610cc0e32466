"""Where MAC's NaN comes from, on a CPU: the MQAR probe's MAC (seed 2, the command of
docs/results/evaluation.md "length generalisation of in-context recall") trains until the first
step whose gradient is not finite, then that step's batch is replayed through the same weights
with the layer-2 memory's chunk size (θ's bound held at its chunk-16 value) and momentum changed,
printing the memory weights' largest entry at each segment start and whether the logits stay
finite.

    PYTHONPATH=src python3 experiments/stability/mqar_mac_nan.py     # ~5 min on one core

The output of the committed run is ``mqar_mac_nan.txt`` beside this file.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recall_probe"))
from mqar import batch  # noqa: E402

from titans.models import TitansLM, get_config  # noqa: E402

THETA_MAX = 2 / (16 * 64)  # the default bound at the probe's chunk 16 and hidden 64, kept for every chunk


def build(chunk: int = 16) -> TitansLM:
    common = dict(vocab_size=256, d_model=64, n_layers=2, n_heads=2, attn_backend="sdpa",
                  memory={"chunk_size": chunk, "alpha_init": 1e-4, "theta_max": THETA_MAX})
    return TitansLM(get_config("tiny-mac", segment_len=16, n_persistent=4, n_retrieve=4,
                               mac_retrieval="prefix", mac_write_norm=False, **common))


def train_until_non_finite(seed: int = 2, steps: int = 10_000):
    """mqar.py's loop (same RNG stream); returns (step, weights, batch) at the first bad step."""
    torch.manual_seed(seed)
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    t0 = time.time()
    for step in range(steps + 1):
        gap = int(torch.randint(0, 33, ()))
        seq, tgt = batch(32, 4, gap)
        loss = F.cross_entropy(model(seq).logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not torch.isfinite(norm):
            print(f"step {step}: loss {loss.item():.3f}, gradient norm {norm.item()} "
                  f"({time.time() - t0:.0f}s)")
            return step, model.state_dict(), seq
        opt.step()
        if step % 500 == 0:
            print(f"step {step}: loss {loss.item():.3f} ({time.time() - t0:.0f}s)", flush=True)
    return None, model.state_dict(), None


@torch.no_grad()
def replay(weights: dict, seq: torch.Tensor, chunk: int, eta_scale: float = 1.0) -> None:
    model = build(chunk)
    model.load_state_dict(weights)
    memory = model.blocks[1].mixer.memory
    calls, gates = [], memory._gates
    memory.register_forward_pre_hook(
        lambda m, a, kw: calls.append((a[0], a[1] if len(a) > 1 else kw.get("cache"))), with_kwargs=True)
    memory._gates = lambda x: (lambda th, et, al: (th, et * eta_scale, al))(*gates(x))
    logits = model(seq).logits
    growth = [max(w.abs().max().item() for w in c.state.weights) for _, c in calls if c is not None]
    theta, eta, _ = (torch.cat(g, 1) for g in zip(*(memory._gates(x) for x, _ in calls)))
    print(f"chunk {chunk:>2}, η × {eta_scale}: max |W| at segment starts "
          f"{' → '.join(f'{g:.2e}' for g in growth)}; logits finite: {bool(torch.isfinite(logits).all())}"
          f" (max θ {theta.max().item():.3g}, max η {eta.max().item():.4f})")


def main() -> None:
    torch.set_num_threads(1)
    step, weights, seq = train_until_non_finite()
    if step is None:
        print("no non-finite gradient in 10,000 steps")
        return
    model = build()
    model.load_state_dict(weights)
    memory = model.blocks[1].mixer.memory
    print(f"layer-2 memory: θ_max {memory.config.theta_max:.3g}, η_max {memory.config.eta_max}")
    for chunk in (16, 8, 4, 2, 1):
        replay(weights, seq, chunk)
    for scale in (0.9, 0.5):
        replay(weights, seq, 16, scale)


if __name__ == "__main__":
    main()
