"""``titans eval lm CHECKPOINT``: perplexity and bits per byte, per-position loss and its plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from titans.cli.generate import load_model
    from titans.data import corpus, load_tokens
    from titans.evaluation.lm import evaluate_lm, plot_per_position, save_result

    model, tok, ckpt = load_model(args.checkpoint, args.device)
    seq_len = args.seq_len
    if seq_len is None:
        state = ckpt / "trainer_state.json"
        seq_len = json.loads(state.read_text())["config"]["seq_len"] if state.exists() else 512
    data = args.data or str(corpus.VALIDATION)
    tokens = load_tokens(data, tok, args.text_field, None if args.max_tokens is None else args.max_tokens + 1)
    device = next(model.parameters()).device
    import torch

    ac = torch.bfloat16 if device.type == "cuda" and not args.fp32 else None
    results = {}
    for mode in args.mode:
        r = evaluate_lm(model, tokens, tok.token_bytes(), tok.eos_id, seq_len, mode=mode,
                        batch_size=args.batch_size, stride=args.stride, bin_size=args.bin_size,
                        device=device, autocast_dtype=ac, progress=not args.quiet)
        results[mode] = r
        print(f"{mode:>8}: loss {r.loss:.4f} | ppl {r.ppl:.2f} | bpb {r.bpb:.4f} | {r.tokens:,} tokens "
              f"(seq_len {seq_len})")
    extra = {"checkpoint": str(ckpt), "data": data}
    if args.json:
        save_result(results, args.json, extra)
    if args.plot:
        plot_per_position(results, args.plot, title=f"{Path(str(ckpt)).name} on {Path(data).name}")
        print(f"per-position loss plot → {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lm", help="perplexity / bits per byte on a held-out file (segments, stream, sliding)")
    p.add_argument("checkpoint", help="checkpoint folder or run folder (its latest checkpoint)")
    p.add_argument("--data", default=None, help="text/jsonl(.gz)/token file or folder (default: the "
                   "embedded validation book)")
    p.add_argument("--mode", nargs="+", default=["segments", "stream"],
                   choices=("segments", "stream", "sliding"))
    p.add_argument("--seq-len", type=int, default=None, help="segment / window length (default: training's)")
    p.add_argument("--stride", type=int, default=None, help="sliding stride (default seq_len / 2)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward / parallel stream lanes")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--bin-size", type=int, default=64, help="positions per per-position-loss bin")
    p.add_argument("--text-field", default="text")
    p.add_argument("--json", default=None, help="write results (with per-position loss) here")
    p.add_argument("--plot", default=None, help="write the loss-vs-position plot (PNG) here")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
