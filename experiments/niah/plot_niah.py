"""Depth × length heat maps of S-NIAH accuracy, one row per model, one column per variant.

    python3 experiments/niah/plot_niah.py experiments/niah/results/niah_results.json

Several results files (one per model, as ``experiments/retrieval_gpu.sh`` writes them) are drawn
as one figure, next to the first file, with ``--out``:

    python3 experiments/niah/plot_niah.py A.json B.json --out heatmap.png

``--labels`` names each file's row (for files that hold the same model, e.g. two checkpoints).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(paths: list[str], out: str | None = None, labels: list[str] | None = None) -> None:
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"--labels: one per file, got {len(labels)} for {len(paths)} files")
    models, variants = {}, None
    for i, path in enumerate(paths):
        result = json.loads(Path(path).read_text())
        tested = {m: v for m, v in result["models"].items() if "records" in v}
        if labels is not None:
            if len(tested) != 1:
                raise ValueError(f"--labels needs one tested model per file; {path} has {len(tested)}")
            tested = {labels[i]: next(iter(tested.values()))}
        models.update(tested)
        variants = variants or result["args"]["variants"]
    fig, axes = plt.subplots(len(models), len(variants), figsize=(3.2 * len(variants), 2.4 * len(models)),
                             squeeze=False, layout="constrained")
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
    fig.savefig(out or Path(paths[0]).with_name("niah_heatmap.png"), dpi=100)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", default=["experiments/niah/results/niah_results.json"],
                        help="niah_results.json files (one figure)")
    parser.add_argument("--out", default=None,
                        help="figure (default: niah_heatmap.png next to the first file)")
    parser.add_argument("--labels", nargs="+", default=None, help="row name per file")
    cli = parser.parse_args()
    main(cli.paths, cli.out, cli.labels)
