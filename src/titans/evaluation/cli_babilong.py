"""``titans eval babilong``: bAbI qa1–qa5 hidden in Gutenberg text (or dump samples)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from .babilong import TASKS

    p = sub.add_parser("babilong", help="BABILong-style bAbI qa1-qa5 in long background text")
    p.add_argument("--model", default=None, help="TitansLM checkpoint folder (omit with --dump)")
    p.add_argument("--tokenizer", default=None, help="'byte', tokenizer.json or folder (default: --model)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--lengths", nargs="+", type=int, default=[0, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--samples", type=int, default=20, help="samples per (task, length)")
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--haystack", default=None, help="Gutenberg test split (default ../shared/data/...)")
    p.add_argument("--device", default=None)
    p.add_argument("--dump", default=None, help="write the samples to this JSONL file (no model needed)")
    p.add_argument("--out", default=None, help="results JSON (records + accuracy per task and length)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .babilong import BabilongGenerator, first_word_match
    from .cli_niah import load_model_and_tokenizer
    from .niah import model_generate_fn

    model, tok = load_model_and_tokenizer(args.model, args.tokenizer, args.device)
    gen = BabilongGenerator(tok.encode, seed=args.seed, haystack_path=args.haystack)
    samples = list(gen.sweep(args.tasks, args.lengths, args.samples))
    if args.dump:
        Path(args.dump).parent.mkdir(parents=True, exist_ok=True)
        with open(args.dump, "w") as fh:
            for s in samples:
                fh.write(json.dumps(s.to_dict()) + "\n")
        print(f"wrote {len(samples)} samples to {args.dump}")
    if model is None:
        if not args.dump:
            raise ValueError("pass --model to evaluate, or --dump FILE to only write the samples")
        return 0
    generate = model_generate_fn(model)
    records, cells = [], {}
    for s in samples:
        pred = tok.decode(generate(list(s.input_ids), 8))
        score = first_word_match(pred, s.answer)
        records.append({"task": s.task, "length": s.length, "index": s.index, "answer": s.answer,
                        "prediction": pred, "score": score})
        cells.setdefault((s.task, s.length), []).append(score)
    accuracy = [{"task": t, "length": n, "accuracy": 100 * sum(v) / len(v), "count": len(v)}
                for (t, n), v in sorted(cells.items())]
    for row in accuracy:
        print(f"{row['task']} {row['length']:>7d}: {row['accuracy']:5.1f}%")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "func"},
                                              "accuracy": accuracy, "records": records}, indent=1) + "\n")
    return 0
