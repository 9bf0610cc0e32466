"""``python -m titans.models [--vocab N] [--sizes ...]``: the presets and their parameter counts."""

from __future__ import annotations

import argparse

from .config import SIZES, VARIANTS, count_parameters, get_config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m titans.models", description=__doc__)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = p.parse_args(argv)
    header = f"{'preset':18s} {'layers':>6s} {'d_model':>7s} {'heads':>5s} {'params':>10s}"
    print(f"{header}  (vocab {args.vocab})")
    for size in args.sizes:
        for variant in VARIANTS:
            cfg = get_config(f"{size}-{variant}", vocab_size=args.vocab)
            n = count_parameters(cfg)
            print(f"{size + '-' + variant:18s} {cfg.n_layers:6d} {cfg.d_model:7d} {cfg.n_heads:5d} "
                  f"{n / 1e6:9.2f}M")


if __name__ == "__main__":
    main()
