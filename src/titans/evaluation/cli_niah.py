"""``titans eval niah``: S-NIAH accuracy of a saved model over lengths × depths (or dump samples)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from .niah import VARIANTS

    p = sub.add_parser("niah", help="single-needle NIAH (RULER S-NIAH: passkey, number, uuid)")
    p.add_argument("--model", default=None, help="TitansLM checkpoint folder (omit with --dump)")
    p.add_argument("--tokenizer", default=None, help="'byte', tokenizer.json or folder (default: --model)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    p.add_argument("--lengths", nargs="+", type=int, default=[2048, 4096, 8192, 16384])
    p.add_argument("--depths", type=int, default=5, help="number of depths spread over [0, 1]")
    p.add_argument("--samples", type=int, default=4, help="samples per (variant, length, depth)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--haystack", default=None, help="Gutenberg test split (default ../shared/data/...)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: answer tokens + 4")
    p.add_argument("--device", default=None)
    p.add_argument("--dump", default=None, help="write the samples to this JSONL file (no model needed)")
    p.add_argument("--out", default=None, help="results JSON (records + summary)")
    p.set_defaults(func=run)


def load_model_and_tokenizer(model_dir: str | None, tokenizer: str | None, device: str | None):
    """``(model or None, tokenizer)``; the tokenizer defaults to the one saved with the model."""
    from titans.data.tokenizer import load_tokenizer

    spec = tokenizer or model_dir
    if spec is None:
        raise ValueError("pass --tokenizer (or --model whose folder holds the tokenizer)")
    tok = load_tokenizer(spec)
    if model_dir is None:
        return None, tok
    import torch

    from titans.models import TitansLM

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = TitansLM.from_pretrained(model_dir, map_location=dev).to(dev).eval()
    return model, tok


def run(args: argparse.Namespace) -> int:
    from .niah import NIAHGenerator, depth_grid, evaluate, model_generate_fn, summarise

    model, tok = load_model_and_tokenizer(args.model, args.tokenizer, args.device)
    gen = NIAHGenerator(tok.encode, seed=args.seed, haystack_path=args.haystack)
    samples = [s for v in args.variants
               for s in gen.sweep(v, args.lengths, depth_grid(args.depths), args.samples)]
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
    max_new = args.max_new_tokens or max(len(tok.encode(" " + s.answer)) for s in samples) + 4
    records = evaluate(model_generate_fn(model), tok.decode, samples, max_new)
    result = {"args": {k: v for k, v in vars(args).items() if k != "func"}, **summarise(records),
              "records": records}
    for row in result["accuracy"]:
        print(f"{row['variant']:8s} {row['length']:>6d}: {row['accuracy']:5.1f}% ({row['count']})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0
