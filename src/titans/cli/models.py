"""``titans models [--vocab N] [--sizes ...]``: the model presets and their parameter counts."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from titans.models.__main__ import main

    main(["--vocab", str(args.vocab), "--sizes", *args.sizes])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from titans.models.config import SIZES

    p = sub.add_parser("models", help="list the model presets and their parameter counts",
                       description=__doc__)
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary size the counts assume")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.set_defaults(func=run)
