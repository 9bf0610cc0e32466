"""Where a trained model's UUID answers go wrong: per-character teacher-forced accuracy of the
36-character value, by needle depth, and the effect of the memory's chunk size at test time.
For a MAC model also by where the needle lies against its segments: ``gap`` = segment of the
answer's first byte − segment of the needle's last byte (0: the needle is inside the attention
window of the answer; 1: in the segment before, so it must come back from the memory; ...).

Uses run_niah.py's test generator (seed 1234, same samples) on a model exported by
``run_niah.py --export``; CPU is enough at 1K-4K (``--device cuda`` for longer):

    PYTHONPATH=src python3 experiments/niah/uuid_probe.py --model .data/run14/mac/mac \\
        --haystack data/test.jsonl.gz --lengths 2048 --samples 8 --chunks 64 32 16 --out probe.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from task_training import PAD, TOK  # noqa: E402

from titans.evaluation.niah import NIAHGenerator, depth_grid  # noqa: E402
from titans.memory import NeuralMemory  # noqa: E402
from titans.models import TitansLM  # noqa: E402


def char_hits(model, samples, batch: int, device: torch.device) -> tuple[np.ndarray, list[str]]:
    """[n_samples, value_len] bool: teacher-forced argmax right at each value character (bf16
    autocast on CUDA, as run_niah.py tests), and the argmax strings."""
    rows, texts = [], []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for i in range(0, len(samples), batch):
            part = samples[i:i + batch]
            seqs = [list(s.input_ids) + TOK.encode(" " + s.answer) for s in part]
            ids = torch.full((len(part), max(map(len, seqs))), PAD, dtype=torch.long)
            for b, q in enumerate(seqs):
                ids[b, :len(q)] = torch.tensor(q)
            pred = model(ids.to(device)).logits.argmax(-1).cpu()
            for b, s in enumerate(part):
                a, n = len(s.input_ids) + 1, len(s.answer)  # +1: the space before the value
                rows.append((pred[b, a - 1:a - 1 + n] == ids[b, a:a + n]).numpy())
                texts.append(TOK.decode(pred[b, a - 1:a - 1 + n].tolist()))
    return np.stack(rows), texts


def segment_gap(sample, segment: int) -> int:
    """Segments between the needle's last byte and the answer's first (byte tokens)."""
    needle_end = len(TOK.encode(sample.prompt[:sample.prompt.index(sample.needle) + len(sample.needle)])) - 1
    return len(sample.input_ids) // segment - needle_end // segment


def set_memory_config(model, **fields) -> None:
    """Change fields of every memory layer's config at test time (chunk_size: theta_max stays
    the trained one, fixed when the model was built)."""
    for m in model.modules():
        if isinstance(m, NeuralMemory):
            for name, value in fields.items():
                setattr(m.config, name, value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--haystack", required=True)
    p.add_argument("--lengths", type=int, nargs="+", default=[2048])
    p.add_argument("--depths", type=int, default=5)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--chunks", type=int, nargs="+", default=[64])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--forget-target", choices=["zero", "init"], default=None,
                   help="override the memory's forget target at test time (default: the model's)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = TitansLM.from_pretrained(args.model, map_location=device).eval()
    if args.forget_target is not None:
        set_memory_config(model, forget_target=args.forget_target)
    gen = NIAHGenerator(TOK.encode, seed=1234, haystack_path=args.haystack)
    results = []
    for length in args.lengths:
        samples = list(gen.sweep("uuid", [length], depth_grid(args.depths), args.samples))
        for chunk in args.chunks:
            set_memory_config(model, chunk_size=chunk)
            hits, texts = char_hits(model, samples, args.batch, device)
            depths = [s.depth for s in samples]
            by_depth = {f"{d:.2f}": float(hits[[x == d for x in depths]].all(1).mean())
                        for d in sorted(set(depths))}
            segment = model.config.segment_len if model.config.variant == "mac" else None
            gaps = [segment_gap(s, segment) if segment else None for s in samples]
            by_gap = {} if segment is None else {  # gap -> [exact, samples]
                str(g): [int(hits[[x == g for x in gaps]].all(1).sum()), gaps.count(g)]
                for g in sorted(set(gaps))}
            rec = {"length": length, "chunk": chunk, "n": len(samples), "exact": float(hits.all(1).mean()),
                   "char_accuracy": float(hits.mean()), "wrong_chars_per_miss":
                   float((~hits[~hits.all(1)]).sum(1).mean()) if (~hits.all(1)).any() else 0.0,
                   "char_accuracy_by_position": hits.mean(0).round(3).tolist(), "exact_by_depth": by_depth,
                   "exact_by_segment_gap": by_gap,
                   "misses": [{"depth": s.depth, "answer": s.answer, "argmax": t, "segment_gap": g}
                              for s, t, g in zip(samples, texts, gaps) if t != s.answer]}
            results.append(rec)
            print(f"len {length:>6d} chunk {chunk:>3d}: exact {100 * rec['exact']:5.1f}%  chars "
                  f"{100 * rec['char_accuracy']:5.1f}%  wrong/miss {rec['wrong_chars_per_miss']:.1f}  "
                  f"by depth {by_depth}  right/n by segment gap {by_gap}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
