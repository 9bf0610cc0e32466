"""Seed table of the CPU ablation run (``run.sh`` beside this file): Gutenberg test, Gutenberg
validation (the trainer's 16K-token check) and WikiText-2 test perplexity per model as mean ± sd
over seeds, and each ablation's change against the full
LMM of the same seed (paired, so the seed's shared data order and init cancel).

    python3 experiments/lm_comparison/results_cpu_seeds/table.py [DIR]

Writes ``summary.csv`` next to the JSON files and prints a markdown table.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(root: Path) -> None:
    runs = {int(p.stem.removeprefix("seed")): json.loads(p.read_text())
            for p in sorted(root.glob("seed*.json"))}
    if not runs:
        raise SystemExit(f"no seed*.json in {root}")
    names = list(next(iter(runs.values()))["models"])
    rows = []
    for name in names:
        ok = {s: r["models"][name] for s, r in runs.items() if "gutenberg_test" in r["models"].get(name, {})}
        gut = [m["gutenberg_test"]["ppl"] for m in ok.values()]
        wik = [m["wikitext2_test"]["ppl"] for m in ok.values()]
        val = [m["val"]["ppl"] for m in ok.values()]
        rel = [100 * (m["gutenberg_test"]["ppl"] / runs[s]["models"]["lmm"]["gutenberg_test"]["ppl"] - 1)
               for s, m in ok.items()]
        rows.append(dict(model=name, seeds=len(ok), params=next(iter(ok.values()))["parameters"],
                         gutenberg_ppl=mean_sd(gut), val_ppl=mean_sd(val), wikitext2_ppl=mean_sd(wik),
                         delta_pct=mean_sd(rel),
                         per_seed=[round(g, 1) for g in gut]))
    with open(root / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "seeds", "params", "gutenberg_ppl_mean", "gutenberg_ppl_sd", "val_ppl_mean",
                    "val_ppl_sd", "wikitext2_ppl_mean", "wikitext2_ppl_sd", "delta_vs_lmm_pct_mean",
                    "delta_vs_lmm_pct_sd"])
        for r in rows:
            w.writerow([r["model"], r["seeds"], r["params"], *(f"{x:.2f}" for x in r["gutenberg_ppl"]),
                        *(f"{x:.2f}" for x in r["val_ppl"]),
                        *(f"{x:.2f}" for x in r["wikitext2_ppl"]), *(f"{x:.2f}" for x in r["delta_pct"])])
    seeds = sorted(runs)
    print(f"| model | params | Gutenberg test ppl, seeds {', '.join(map(str, seeds))} | mean ± sd | "
          "Δ vs LMM (paired) | Gutenberg validation ppl | WikiText-2 test ppl |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        g, d, v, w = r["gutenberg_ppl"], r["delta_pct"], r["val_ppl"], r["wikitext2_ppl"]
        delta = "—" if r["model"] == "lmm" else f"{d[0]:+.1f}% ± {d[1]:.1f}"
        print(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {' / '.join(map(str, r['per_seed']))} | "
              f"{g[0]:.1f} ± {g[1]:.1f} | {delta} | {v[0]:.1f} ± {v[1]:.1f} | {w[0]:.0f} ± {w[1]:.0f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
