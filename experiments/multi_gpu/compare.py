"""Compare the runs of ``run.sh``: train loss per logged step and validation loss of the 2-GPU
DDP and FSDP2 runs (FSDP2 resumed in one process half-way) against the 1-GPU run, and throughput.

    python3 experiments/multi_gpu/compare.py OUT --json OUT/summary.json
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

RUNS = {"gpu1": "1 GPU", "ddp2": "2 GPUs, DDP", "fsdp2": "2 GPUs, FSDP2 → resumed on 1 GPU"}


def read(path: Path) -> dict:
    train, val, tps = {}, {}, []
    with open(path) as fh:
        for row in csv.DictReader(fh):
            step = int(row["step"])
            if row["split"] == "train":
                train[step] = float(row["loss"])
                if row["tokens_per_s"]:
                    tps.append((step, float(row["tokens_per_s"])))
            elif row["split"] == "val":
                val[step] = float(row["loss"])
    return {"train": train, "val": val, "tokens_per_s": tps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out")
    p.add_argument("--json")
    args = p.parse_args()
    out = Path(args.out)
    runs = {k: read(out / k / "log.csv") for k in RUNS if (out / k / "log.csv").exists()}
    base = runs["gpu1"]
    summary = {}
    print(f"{'run':36s} {'max rel Δ train loss':>21s} {'val loss (steps)':>30s} {'tokens/s':>10s}")
    for name, r in runs.items():
        common = sorted(set(r["train"]) & set(base["train"]))
        rel = max(abs(r["train"][s] - base["train"][s]) / base["train"][s] for s in common)
        # Throughput: median over logged steps after the first 10 (compile/warm-up excluded);
        # the resumed FSDP2 half runs on one GPU, so only its first half counts as 2-GPU.
        half = max(r["train"]) // 2 if name == "fsdp2" else max(r["train"])
        window = [t for s, t in r["tokens_per_s"] if 10 < s <= half] or [t for _, t in r["tokens_per_s"]]
        tps = statistics.median(window)
        summary[name] = {"label": RUNS[name], "steps_compared": len(common), "max_rel_train_loss_diff": rel,
                         "val_loss": r["val"], "tokens_per_s_median": tps,
                         "final_train_loss": r["train"][max(r["train"])]}
        vals = ", ".join(f"{v:.4f} ({s})" for s, v in sorted(r["val"].items()))
        print(f"{RUNS[name]:36s} {rel:21.2e} {vals:>30s} {tps:10.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
