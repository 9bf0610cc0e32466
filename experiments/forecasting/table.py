"""Markdown tables of the forecasting results (ours beside the paper's averages).

    python3 experiments/forecasting/table.py experiments/forecasting/results [experiments/forecasting/seeds]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

PAPER = {  # NOTES.md §5, MSE / MAE averaged over the four horizons (input 96)
    "ETTh1": {"LMM (Simba framework)": (0.420, 0.421), "Simba": (0.441, 0.432), "DLinear": (0.456, 0.452)},
    "ETTh2": {"LMM (Simba framework)": (0.336, 0.382), "Simba": (0.361, 0.391), "DLinear": (0.559, 0.515)},
}
NAMES = {"lmm": "LMM forecaster (ours)", "patchtst": "PatchTST-style (ours)", "dlinear": "DLinear (ours)"}
HORIZONS = (96, 192, 336, 720)


def load(folder: Path) -> dict:
    runs = {}
    for f in sorted(folder.glob("ETTh*_*.json")):
        r = json.loads(f.read_text())
        c = r["config"]
        runs[(c["dataset"], c["model"], c["pred_len"], c["seed"])] = r
    return runs


def main(results: str, seeds: str | None = None) -> None:
    runs = load(Path(results))
    for ds in ("ETTh1", "ETTh2"):
        print(f"\n### {ds} (test MSE / MAE, standardised, input 96)\n")
        print("| model | " + " | ".join(f"H={h}" for h in HORIZONS) + " | average |")
        print("|---|" + "---|" * (len(HORIZONS) + 1))
        for m in ("lmm", "patchtst", "dlinear"):
            rs = [next((r for k, r in runs.items() if k[:3] == (ds, m, h)), None) for h in HORIZONS]
            if any(r is None for r in rs):
                continue
            cells = [f"{r['test_mse']:.3f} / {r['test_mae']:.3f}" for r in rs]
            avg = (statistics.mean(r["test_mse"] for r in rs), statistics.mean(r["test_mae"] for r in rs))
            print(f"| {NAMES[m]} | " + " | ".join(cells) + f" | **{avg[0]:.3f} / {avg[1]:.3f}** |")
        for name, (mse, mae) in PAPER[ds].items():
            print(f"| *paper: {name}* |" + " |" * len(HORIZONS) + f" *{mse:.3f} / {mae:.3f}* |")
    if seeds:
        extra = {}
        for d in sorted(Path(seeds).glob("seed*")):
            extra.update(load(d))
        print("\n### Seed spread at H=96 (test MSE; seeds 2021, 1, 2)\n")
        print("| dataset | model | seed 2021 | seed 1 | seed 2 | mean ± sd |")
        print("|---|---|---|---|---|---|")
        for ds in ("ETTh1", "ETTh2"):
            for m in ("lmm", "patchtst", "dlinear"):
                vals = [runs.get((ds, m, 96, 2021)), extra.get((ds, m, 96, 1)), extra.get((ds, m, 96, 2))]
                if any(v is None for v in vals):
                    continue
                x = [v["test_mse"] for v in vals]
                print(f"| {ds} | {NAMES[m]} | " + " | ".join(f"{v:.4f}" for v in x)
                      + f" | {statistics.mean(x):.4f} ± {statistics.stdev(x):.4f} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
