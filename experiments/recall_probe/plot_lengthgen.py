"""Recall accuracy vs the noise gap between the pairs and the queries, one line per run of
``mqar.py --test-gaps`` (the shaded band is the range of gaps seen in training).

    python3 experiments/recall_probe/plot_lengthgen.py experiments/recall_probe/results_lengthgen/*.json \
        --out experiments/recall_probe/results_lengthgen/accuracy_vs_gap.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def label(run: dict) -> str:
    a = run["args"]
    alpha = f", α₀ {a['alpha_init']:g}" if a.get("alpha_init") is not None else ""
    extra = ""
    if a["model"] == "mac" and a.get("mac_retrieval", "prefix") != "prefix":
        extra += f", {a['mac_retrieval']} read"
    if a.get("value_norm"):
        extra += f", value norm {a['value_norm']}"
    if a.get("forget_target") == "init":
        extra += ", forgets to M₀"
    return f"{a['model']}{alpha}{extra}, {a['steps']} steps, seed {a['seed']}"


def main(paths: list[str], out: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    colors = plt.cm.tab20.colors
    train_gap = 0
    for i, path in enumerate(paths):
        run = json.loads(Path(path).read_text())
        if not run.get("test"):
            continue
        gaps = sorted(int(g) for g in run["test"])
        dashed = run["args"].get("forget_target") == "init"
        ax.plot([max(g, 1) for g in gaps], [run["test"][str(g)] for g in gaps], marker="o",
                color=colors[i % len(colors)], linestyle="--" if dashed else "-", label=label(run))
        train_gap = max(train_gap, run["args"]["train_gap"])
    ax.axvspan(1, max(train_gap, 1), color="grey", alpha=0.15, label="gaps seen in training")
    ax.axhline(0.1, color="grey", linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("noise tokens between the pairs and the queries (0 drawn at 1)")
    ax.set_ylabel("recall accuracy")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="mqar.py --out JSON files")
    parser.add_argument("--out", default="accuracy_vs_gap.png", help="figure")
    cli = parser.parse_args()
    main(cli.paths, cli.out)
