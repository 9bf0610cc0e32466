"""``titans train --config <preset | file.json> [--field value ...] [--resume [PATH]]``.

Every :class:`~titans.training.TrainConfig` field is a flag (``--max-steps 200``,
``--train-data books/``, ``--compile``); model fields change through
``--model-override key=value`` (value parsed as JSON, e.g. ``d_model=128`` or
``memory={"depth":1}``). Under ``torchrun --nproc_per_node N`` the same command trains with
DDP (or ``--parallel fsdp``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from titans.training import TrainConfig

_OPTIONAL_INT = {"max_train_tokens", "max_val_tokens", "stop_after", "threads"}
_OPTIONAL_STR = {"train_data", "val_data"}


def _optional(kind):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    return parse


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValueError(f"--model-override expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a Titans model or baseline (CPU, GPU, torchrun)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help="model preset '<size>-<variant>' (e.g. tiny-mac, small-mag) or a JSON file "
                        "(default tiny-mac, or the checkpoint's config with --resume)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                   help="continue from a checkpoint / run folder (no PATH: the run's out_dir)")
    p.add_argument("--model-override", action="append", default=[], metavar="KEY=VALUE",
                   help="change a model config field (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    for f in fields(TrainConfig):
        if f.name == "model_overrides":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name in _OPTIONAL_INT:
            p.add_argument(flag, type=_optional(int), default=argparse.SUPPRESS, metavar="INT|none")
        elif f.name in _OPTIONAL_STR:
            p.add_argument(flag, type=_optional(str), default=argparse.SUPPRESS, metavar="PATH|none")
        elif isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
        else:
            p.add_argument(flag, type=type(f.default), default=argparse.SUPPRESS)
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    names = {f.name for f in fields(TrainConfig)} - {"model_overrides"}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    model_overrides = dict(parse_override(t) for t in args.model_override)
    resume = args.resume
    if resume == "auto":
        if args.config is None and "out_dir" not in overrides:
            raise ValueError("--resume without PATH needs --config or --out-dir to know the run folder")
        base = TrainConfig.load(args.config or "tiny-mac", **overrides)
        resume = base.out_dir
    if resume is not None and args.config is None:
        from titans.training.checkpoint import resolve_checkpoint

        saved = json.loads((resolve_checkpoint(resume) / "trainer_state.json").read_text())["config"]
        saved.update(overrides)
        if model_overrides:
            saved["model_overrides"] = {**saved["model_overrides"], **model_overrides}
        return TrainConfig.from_dict(saved), resume
    cfg = TrainConfig.load(args.config or "tiny-mac", **overrides)
    if model_overrides:
        cfg = cfg.replace(model_overrides={**cfg.model_overrides, **model_overrides})
    return cfg, resume


def run(args: argparse.Namespace) -> int:
    try:
        cfg, resume = resolve_config(args)
    except ValueError as e:
        print(f"titans train: error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    from titans.training import train

    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    summary = train(cfg, resume=resume)
    before, after = summary.get("val_before"), summary["val_after"]
    if before is not None and os.environ.get("RANK", "0") == "0":
        print(f"validation perplexity: {before['ppl']:.2f} before → {after['ppl']:.2f} after "
              f"({summary['steps']} steps, {summary['train_seconds']:.0f} s)")
    return 0
