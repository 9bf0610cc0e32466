"""Accuracy vs context length per bAbI task and model (the paper's Fig. 6b at our scale).

Reads ``run_babilong.py`` results (``babilong_results.json``) or its logs (lines
``  qa1   4096:  10.0%``); the model name of a log is taken from its first line (``mac: 4.10M
parameters``).

    python3 experiments/babilong/plot_babilong.py experiments/babilong/results_run3/*.log \
        experiments/babilong/results_run3/*.json --out experiments/babilong/results_run3/babilong.png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LINE = re.compile(r"^\s*(qa\d)\s+(\d+):\s+([\d.]+)%")


def read(path: Path) -> dict[str, dict[tuple[str, int], float]]:
    """model → {(task, length): accuracy %}."""
    if path.suffix == ".json":
        result = json.loads(path.read_text())
        out = {}
        for model, res in result["models"].items():
            acc = res.get("accuracy", {})
            out[model] = {(k.split("@")[0], int(k.split("@")[1])): v for k, v in acc.items()}
        return out
    lines = path.read_text().splitlines()
    model = lines[0].split(":")[0].strip() if lines else path.stem
    cells = {}
    for line in lines:
        m = LINE.match(line)
        if m:
            cells[(m.group(1), int(m.group(2)))] = float(m.group(3))
    return {model: cells} if cells else {}


def main(paths: list[str], out: str) -> None:
    models: dict[str, dict[tuple[str, int], float]] = {}
    for p in paths:
        for model, cells in read(Path(p)).items():
            models.setdefault(model, {}).update(cells)
    if not models:
        raise SystemExit("no results found in " + " ".join(paths))
    tasks = sorted({t for cells in models.values() for t, _ in cells})
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(3.0 * (len(tasks) + 1), 2.8), sharey=True,
                             layout="constrained")
    for ax, task in zip(axes, tasks + ["mean"]):
        for model, cells in sorted(models.items()):
            lengths = sorted({n for _, n in cells})
            if task == "mean":
                ys = [sum(cells.get((t, n), 0.0) for t in tasks) / len(tasks) for n in lengths]
            else:
                ys = [cells.get((task, n), float("nan")) for n in lengths]
            ax.plot(range(len(lengths)), ys, marker="o", label=model)
            ax.set_xticks(range(len(lengths)), [f"{n // 1024}K" if n else "0" for n in lengths])
        ax.set_title(task)
        ax.set_xlabel("context (bytes)")
        ax.set_ylim(-5, 105)
    axes[0].set_ylabel("accuracy %")
    axes[-1].legend(fontsize=8)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="babilong_results.json files and/or run_babilong.py logs")
    parser.add_argument("--out", default="babilong.png", help="figure")
    cli = parser.parse_args()
    main(cli.paths, cli.out)
