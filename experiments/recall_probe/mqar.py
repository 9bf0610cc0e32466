"""Multi-query associative recall (MQAR) probe on CPU: can a small model learn in-context
key→value recall, and how fast? A sample is P pairs (key letter, value digit), optionally a gap
of noise tokens (upper-case letters), a separator, then the P keys again in random order each
followed by its value; the loss and accuracy are on the values after the repeated keys
(chance 10%).

Length generalisation (the S-NIAH question at CPU scale): train with gaps of 0 … ``--train-gap``
tokens, then measure accuracy at each of ``--test-gaps`` (longer than anything seen in training).

    PYTHONPATH=src python3 experiments/recall_probe/mqar.py --model lmm --steps 1500
    PYTHONPATH=src python3 experiments/recall_probe/mqar.py --model lmm --pairs 4 --train-gap 32 \
        --test-gaps 0 32 128 512 2048 --steps 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from titans.models import TitansLM, get_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: the shared options
from model_options import add_model_options, mac_options, memory_overrides  # noqa: E402


def batch(B: int, P: int, gap: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, 2P + gap + 1 + 2P]`` token ids and targets (-100 except at the recalled values)."""
    keys = torch.stack([torch.randperm(26)[:P] for _ in range(B)]) + ord("a")
    vals = torch.randint(ord("0"), ord("9") + 1, (B, P))
    order = torch.stack([torch.randperm(P) for _ in range(B)])
    context = torch.stack([keys, vals], 2).flatten(1)
    noise = torch.randint(ord("A"), ord("Z") + 1, (B, gap))
    queries = torch.stack([torch.gather(keys, 1, order), torch.gather(vals, 1, order)], 2).flatten(1)
    seq = torch.cat([context, noise, torch.full((B, 1), ord("|")), queries], 1)
    tgt = torch.full_like(seq, -100)
    tgt[:, 2 * P + gap + 1::2] = torch.gather(vals, 1, order)  # at each repeated key: its value
    return seq, tgt


@torch.no_grad()
def accuracy(model: TitansLM, P: int, gap: int, samples: int, batch_size: int) -> float:
    hits = total = 0
    for _ in range(max(1, samples // batch_size)):
        seq, tgt = batch(batch_size, P, gap)
        pred = model(seq).logits.argmax(-1)
        mask = tgt != -100
        hits += (pred == tgt)[mask].sum().item()
        total += mask.sum().item()
    return hits / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["transformer", "lmm", "mac", "mag", "mal"], default="lmm")
    p.add_argument("--segment", type=int, default=16, help="MAC segment = MAG / MAL sliding window")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    add_model_options(p)
    p.add_argument("--train-gap", type=int, default=0, help="training gaps are uniform in [0, this]")
    p.add_argument("--test-gaps", nargs="*", type=int, default=[], help="gaps tested after training")
    p.add_argument("--test-samples", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file for the log")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    memory = {"chunk_size": args.chunk, **memory_overrides(args)}
    common = dict(vocab_size=256, d_model=args.d_model, n_layers=2, n_heads=2, attn_backend="sdpa",
                  memory=memory)
    if args.model == "transformer":
        cfg = get_config("tiny-transformer", **common)
    elif args.model == "mac":
        cfg = get_config("tiny-mac", segment_len=args.segment, n_persistent=4, n_retrieve=4,
                         **mac_options(args), **common)
    elif args.model in ("mag", "mal"):
        cfg = get_config(f"tiny-{args.model}", window=args.segment, n_persistent=4, **common)
    else:
        cfg = get_config("tiny-lmm", n_persistent=0, **common)
    model = TitansLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    log, t0 = [], time.time()
    for step in range(args.steps + 1):
        gap = int(torch.randint(0, args.train_gap + 1, ())) if args.train_gap else 0
        seq, tgt = batch(args.batch, args.pairs, gap)
        logits = model(seq).logits
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            acc = (logits.argmax(-1) == tgt)[tgt != -100].float().mean().item()
            log.append({"step": step, "loss": loss.item(), "accuracy": acc, "seconds": time.time() - t0})
            print(f"step {step} loss {loss.item():.3f} acc {acc:.2f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    test = {}
    for gap in args.test_gaps:
        test[gap] = accuracy(model, args.pairs, gap, args.test_samples, args.batch)
        print(f"gap {gap}: accuracy {test[gap]:.3f}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "params": model.num_parameters(), "log": log, "test": test},
                      fh, indent=1)


if __name__ == "__main__":
    main()
