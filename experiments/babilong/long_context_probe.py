"""Why a BABILong model fails at long contexts: for a few test stories per length, the greedy
answer it would emit (teacher-forced argmax over " answer") and its per-byte LM loss on the prompt
in eighths of the context — a loss that climbs towards the end means the model's state itself
degrades with length (not only its recall of the facts).

With ``--stream N``, instead: one Gutenberg test text of N bytes streamed through the model in
pieces of ``--piece`` bytes (the cache carried between them), reporting each piece's LM loss and
the Frobenius norms of every memory layer's first and last weight matrix after it — how far the
state drifts from what ≤ train-length contexts produce. ``--alpha-scale`` multiplies the memory's
forget gate α at test time (a probe intervention, patched into ``NeuralMemory._gates``);
``--anchor-decay`` emulates a memory that forgets towards its learned initial weights W0 instead
of towards zero: after each piece (a multiple of the chunk) every weight gets ``(1 − Π(1 − α)) W0``
added, Π over the piece's tokens per head — exact for the end-of-piece weights, except that
inside a piece the tokens still see the zero-target decay.

    PYTHONPATH=src python3 experiments/babilong/long_context_probe.py --model MODEL_DIR \
        --lengths 16384 32768 --samples 3 --out probe.json
    PYTHONPATH=src python3 experiments/babilong/long_context_probe.py --model MODEL_DIR \
        --stream 65536 --piece 4096 --alpha-scale 1 0 --out stream.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import time
from pathlib import Path

import torch

from titans.data.tokenizer import ByteTokenizer
from titans.evaluation.babilong import DEFAULT_FACTS, TASKS, BabilongGenerator
from titans.memory.neural_memory import MemoryState, NeuralMemory, NeuralMemoryCache
from titans.models import TitansLM


def memory_caches(cache: object, out: list) -> list:
    """Every :class:`NeuralMemoryCache` inside a model cache (depth-first, layer order)."""
    if isinstance(cache, NeuralMemoryCache):
        out.append(cache)
    elif isinstance(cache, (list, tuple)):
        for c in cache:
            memory_caches(c, out)
    elif dataclasses.is_dataclass(cache):
        for f in dataclasses.fields(cache):
            memory_caches(getattr(cache, f.name), out)
    return out


def _norm(w: torch.Tensor) -> float:
    return torch.linalg.norm(w.float()).item()


def stream(model: TitansLM, tok: ByteTokenizer, args: argparse.Namespace) -> list[dict]:
    """Per-piece LM loss and memory weight norms of one long text, for each ``--alpha-scale``."""
    text = ""
    with gzip.open(args.haystack, "rt") as f:
        for line in f:
            text += json.loads(line)["text"]
            if len(text) > args.stream + 1:
                break
    ids = torch.tensor([tok.encode(text)[:args.stream + 1]])
    gates = NeuralMemory._gates
    modules = [m for m in model.modules() if isinstance(m, NeuralMemory)]
    inits = [[w.detach().clone() for w in m.initial_state().weights] for m in modules]
    kept: dict[int, torch.Tensor] = {}  # id(module) -> Π(1 − α) over the piece so far, [B, H]
    rows = []
    try:
        for scale in args.alpha_scale:
            def scaled(self, x, scale=scale):
                theta, eta, alpha = gates(self, x)
                # a model may call a layer several times a piece (MAC: once a segment)
                kept[id(self)] = kept.get(id(self), 1.0) * torch.log1p(-alpha * scale).sum(1).exp()
                return theta, eta, alpha * scale
            NeuralMemory._gates = scaled
            cache = None
            with torch.no_grad():
                for start in range(0, args.stream, args.piece):
                    x, y = ids[:, start:start + args.piece], ids[:, start + 1:start + args.piece + 1]
                    kept.clear()
                    out = model(x, targets=y, cache=cache, use_cache=True)
                    cache = out.cache
                    mems = memory_caches(cache.layers, [])
                    if args.anchor_decay:
                        for m, c, w0 in zip(modules, mems, inits):
                            if c.anchor is not None:
                                raise ValueError("--anchor-decay needs each piece to end on a memory "
                                                 "chunk boundary: --piece a multiple of the chunk "
                                                 "and a model without persistent tokens")
                            lost = (1 - kept[id(m)])[..., None, None]
                            c.state = MemoryState(tuple(w + lost * i for w, i in zip(c.state.weights, w0)),
                                                  c.state.momentum)
                    row = {"alpha_scale": scale, "anchor_decay": args.anchor_decay,
                           "position": start + x.shape[1], "loss": out.loss.item(),
                           "w_first": [_norm(c.state.weights[0]) for c in mems],
                           "w_last": [_norm(c.state.weights[-1]) for c in mems]}
                    rows.append(row)
                    print(f"alpha x{scale:g} to {row['position']:>6d}: loss {row['loss']:.3f}  |W first| "
                          f"{' '.join(f'{v:.1f}' for v in row['w_first'])}  |W last| "
                          f"{' '.join(f'{v:.1f}' for v in row['w_last'])}", flush=True)
    finally:
        NeuralMemory._gates = gates
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="a directory saved by TitansLM.save_pretrained (byte vocabulary)")
    p.add_argument("--tasks", nargs="+", default=["qa1"], choices=TASKS)
    p.add_argument("--lengths", nargs="+", type=int, default=[16384, 32768])
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--parts", type=int, default=8,
                   help="the prompt's loss is reported in this many equal parts")
    p.add_argument("--haystack", default="../shared/data/gutenberg/test.jsonl.gz")
    p.add_argument("--seed", type=int, default=4321, help="test seed of run_babilong.py")
    p.add_argument("--stream", type=int, default=0, help="bytes of one text to stream (0: the stories)")
    p.add_argument("--piece", type=int, default=4096, help="bytes per streamed piece")
    p.add_argument("--alpha-scale", nargs="+", type=float, default=[1.0],
                   help="test-time factors on the memory's forget gate α (streaming only)")
    p.add_argument("--anchor-decay", action="store_true",
                   help="streaming: forget towards the learned initial weights (see above)")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    tok = ByteTokenizer()
    model = TitansLM.from_pretrained(args.model).eval()
    if args.stream:
        rows = stream(model, tok, args)
        if args.out:
            Path(args.out).write_text(json.dumps({"model": args.model, "args": vars(args), "rows": rows},
                                                 indent=1) + "\n")
        return
    gen = BabilongGenerator(tok.encode, seed=args.seed, haystack_path=args.haystack, num_facts=DEFAULT_FACTS)
    rows = []
    for length in args.lengths:
        for s in gen.sweep(args.tasks, [length], args.samples):
            ids = list(s.input_ids) + tok.encode(" " + s.answer + ".")
            t0 = time.time()
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].float()
            nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
            a = len(s.input_ids)
            prompt = nll[:a - 1]
            n = len(prompt)
            k = args.parts
            parts = [prompt[i * n // k:(i + 1) * n // k].mean().item() for i in range(k)]
            emitted = tok.decode(logits.argmax(-1)[a - 1:len(ids) - 2].tolist())
            row = {"task": s.task, "length": length, "index": s.index, "answer": s.answer,
                   "emitted": emitted, "exact": emitted == " " + s.answer, "prompt_nll_parts": parts,
                   "seconds": time.time() - t0}
            rows.append(row)
            print(f"{s.task} {length:>6d} answer {s.answer!r:>11} emitted {emitted!r:>12}  prompt "
                  f"nats/byte by part: {' '.join(f'{v:.2f}' for v in parts)}", flush=True)
    if args.out:
        result = {"model": args.model, "args": vars(args), "rows": rows}
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
