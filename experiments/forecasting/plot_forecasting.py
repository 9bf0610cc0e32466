"""Bar chart of test MSE per horizon (ETTh1, ETTh2) for every model in ``summary.csv``.

    python3 experiments/forecasting/plot_forecasting.py experiments/forecasting/results
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PAPER_AVG_MSE = {"ETTh1": {"LMM (paper)": 0.420, "Simba (paper)": 0.441, "DLinear (paper)": 0.456},
                 "ETTh2": {"LMM (paper)": 0.336, "Simba (paper)": 0.361, "DLinear (paper)": 0.559}}


def main(folder: str) -> None:
    rows = list(csv.DictReader(open(Path(folder) / "summary.csv")))
    datasets = sorted({r["dataset"] for r in rows})
    models = sorted({r["model"] for r in rows})
    horizons = ["96", "192", "336", "720", "avg"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        width = 0.8 / len(models)
        for i, m in enumerate(models):
            mse = {r["horizon"]: float(r["mse"]) for r in rows if (r["dataset"], r["model"]) == (ds, m)}
            vals = [mse.get(h, float("nan")) for h in horizons]
            ax.bar([j + i * width for j in range(len(horizons))], vals, width, label=m)
        for name, v in PAPER_AVG_MSE.get(ds, {}).items():
            color = {"LMM": "C3", "Sim": "C4", "DLi": "C5"}[name[:3]]
            ax.axhline(v, ls="--", lw=0.8, color=color, label=name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(horizons))], horizons)
        ax.set_xlabel("horizon (input 96)")
        ax.set_ylabel("test MSE (standardised)")
        ax.set_title(ds)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(folder) / "forecasting_mse.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiments/forecasting/results")
