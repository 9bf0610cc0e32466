"""``titans`` entry point. Each command lives in its own module exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules under titans.cli that provide a sub-command.
COMMANDS = ["demo", "train", "generate", "eval", "tokenizer", "models"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="titans", description="Titans neural long-term memory")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"titans.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
