"""Depth × length heat maps of S-NIAH accuracy, one row per model, one column per variant.

    python3 experiments/niah/plot_niah.py experiments/niah/results/niah_results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(path: str) -> None:
    result = json.loads(Path(path).read_text())
    models = {m: v for m, v in result["models"].items() if "records" in v}
    variants = result["args"]["variants"]
    fig, axes = plt.subplots(len(models), len(variants), figsize=(3.2 * len(variants), 2.4 * len(models)),
                             squeeze=False)
    for row, (name, res) in zip(axes, models.items()):
        recs = res["records"]
        lengths = sorted({r["length"] for r in recs})
        depths = sorted({r["depth"] for r in recs})
        for ax, variant in zip(row, variants):
            grid = np.full((len(depths), len(lengths)), np.nan)
            for i, d in enumerate(depths):
                for j, n in enumerate(lengths):
                    cell = (variant, n, d)
                    s = [r["score"] for r in recs if (r["variant"], r["length"], r["depth"]) == cell]
                    grid[i, j] = 100 * np.mean(s) if s else np.nan
            im = ax.imshow(grid, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto", origin="upper")
            ax.set_xticks(range(len(lengths)), [f"{n // 1024}K" for n in lengths])
            ax.set_yticks(range(len(depths)), [f"{d:.2f}" for d in depths])
            ax.set_title(f"{name} · {variant}", fontsize=9)
            ax.set_xlabel("length")
            ax.set_ylabel("depth")
    fig.colorbar(im, ax=axes, shrink=0.6, label="accuracy %")
    fig.savefig(Path(path).with_name("niah_heatmap.png"), dpi=100)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiments/niah/results/niah_results.json")
