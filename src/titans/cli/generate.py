"""``titans generate CHECKPOINT [--prompt TEXT]``: sample text from a trained model."""

from __future__ import annotations

import argparse

import torch


def load_model(path: str, device: str = "auto"):
    """(model in eval mode, tokenizer, checkpoint folder) from a checkpoint or run folder."""
    from titans.data import load_tokenizer
    from titans.models import TitansLM
    from titans.training.checkpoint import resolve_checkpoint
    from titans.training.distributed import resolve_device

    ckpt = resolve_checkpoint(path)
    dev = resolve_device(device)
    model = TitansLM.from_pretrained(str(ckpt), map_location=dev).to(dev).eval()
    return model, load_tokenizer(ckpt), ckpt


def run(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must lie in (0, 1], got {args.top_p}")
    model, tok, _ = load_model(args.checkpoint, args.device)
    device = next(model.parameters()).device
    ids = torch.tensor([tok.encode(args.prompt)], dtype=torch.long, device=device)
    if ids.shape[1] == 0:
        ids = torch.tensor([[tok.eos_id]], device=device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    with torch.no_grad():
        out = model.generate(ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None,
                             top_p=args.top_p, eos_token_id=tok.eos_id if args.stop_at_eos else None,
                             generator=g)
    print(tok.decode(out[0].tolist()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text from a checkpoint")
    p.add_argument("checkpoint", help="checkpoint folder or run folder (its latest checkpoint)")
    p.add_argument("--prompt", default="The ")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50, help="0 disables")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--stop-at-eos", action="store_true", help="stop at the document separator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=run)
