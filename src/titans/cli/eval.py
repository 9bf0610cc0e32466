"""``titans eval <suite>``: language-model perplexity and the evidence suites.

Each suite is a module exposing ``register(subparsers)``; add its dotted path to ``SUITES``.
"""

from __future__ import annotations

import argparse
import importlib

# Dotted module paths, each with ``register(subparsers)`` adding one ``titans eval <name>``.
SUITES: list[str] = ["titans.cli.eval_lm", "titans.evaluation.cli_niah", "titans.evaluation.cli_babilong",
                     "titans.evaluation.cli_forecast"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model: perplexity, S-NIAH, BABILong, forecasting")
    suites = p.add_subparsers(dest="suite", required=True)
    for path in SUITES:
        importlib.import_module(path).register(suites)
