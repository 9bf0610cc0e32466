"""Model options shared by the experiment scripts (the retrieval harness and the MQAR probe):
MAC's memory read and write, and the memory overrides every Titans variant takes. One parser
definition and one mapping to config keywords, so the two scripts cannot drift apart."""

from __future__ import annotations

import argparse


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mac-retrieval", choices=["prefix", "token"], default="prefix",
                   help="MAC's memory read (ModelConfig.mac_retrieval)")
    p.add_argument("--mac-write", choices=["attention", "input"], default="attention",
                   help="what MAC writes into its memory: the attention output (the paper's) or its "
                        "input tokens (ModelConfig.mac_write)")
    p.add_argument("--mac-write-norm", choices=["on", "off"], default="off",
                   help="MAC writes RMSNorm(y) into its memory (ModelConfig.mac_write_norm)")
    p.add_argument("--alpha-init", type=float, default=None, help="memory forget gate at "
                   "initialisation (default: the library's)")
    p.add_argument("--value-norm", choices=["none", "rms"], default=None,
                   help="memory value normalisation (default: the library's, none)")
    p.add_argument("--momentum-form", choices=["heavy_ball", "ema"], default=None,
                   help="memory momentum: heavy_ball (the library's default, the paper's) or ema "
                        "(θ scaled by 1 − η: bounded steady step)")
    p.add_argument("--forget-target", choices=["zero", "init"], default=None,
                   help="what the memory's forget gate decays towards: zero (the library's default, "
                        "the paper's) or the learned initial memory")


def memory_overrides(args: argparse.Namespace) -> dict:
    """NeuralMemoryConfig keywords of the options given (the library's defaults for the rest)."""
    names = ("alpha_init", "value_norm", "momentum_form", "forget_target")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def mac_options(args: argparse.Namespace) -> dict:
    """ModelConfig keywords of MAC's read and write options."""
    return {"mac_retrieval": args.mac_retrieval, "mac_write": args.mac_write,
            "mac_write_norm": args.mac_write_norm == "on"}
