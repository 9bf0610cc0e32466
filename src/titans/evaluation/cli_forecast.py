"""``titans eval forecast``: train and test forecasters on ETTh1/ETTh2 with one harness."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HORIZONS = (96, 192, 336, 720)


def register(sub: argparse._SubParsersAction) -> None:
    from .forecasting.data import DATASETS
    from .forecasting.models import MODELS

    p = sub.add_parser("forecast", help="long-term forecasting (ETTh1/ETTh2): LMM, DLinear, PatchTST")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--horizons", nargs="+", type=int, default=list(HORIZONS))
    p.add_argument("--seq-len", type=int, default=96)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--max-train-batches", type=int, default=None, help="cap batches per epoch (smoke runs)")
    p.add_argument("--model-kwargs", type=json.loads, default={},
                   help='JSON {"lmm": {...}, "patchtst": {...}} of constructor overrides per model')
    p.add_argument("--lr", type=json.loads, default={},
                   help='JSON {"lmm": 1e-3, ...} per-model learning rates')
    p.add_argument("--data-root", default=None,
                   help="folder with ETTh1.csv/ETTh2.csv (default ../shared/data/ett)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--loss", default="mse", choices=["mse", "mae", "huber"],
                   help="training loss (early stopping and the reported metrics stay MSE/MAE)")
    p.add_argument("--out", default="forecast_results", help="folder for one JSON per run + summary.csv")
    p.set_defaults(func=run)


def summary_rows(records: list[dict]) -> list[dict]:
    """Per (dataset, model): every horizon's MSE/MAE plus their average over horizons."""
    rows = []
    keys = sorted({(r["config"]["dataset"], r["config"]["model"]) for r in records})
    for ds, model in keys:
        runs = sorted((r for r in records if (r["config"]["dataset"], r["config"]["model"]) == (ds, model)),
                      key=lambda r: r["config"]["pred_len"])
        for r in runs:
            rows.append({"dataset": ds, "model": model, "horizon": r["config"]["pred_len"],
                         "mse": round(r["test_mse"], 4), "mae": round(r["test_mae"], 4)})
        rows.append({"dataset": ds, "model": model, "horizon": "avg",
                     "mse": round(sum(r["test_mse"] for r in runs) / len(runs), 4),
                     "mae": round(sum(r["test_mae"] for r in runs) / len(runs), 4)})
    return rows


def run(args: argparse.Namespace) -> int:
    import torch

    from .forecasting.harness import ForecastConfig, save_record, train_and_evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    records = []
    for ds in args.datasets:
        for h in args.horizons:
            for model in args.models:
                path = out / f"{ds}_{model}_{h}.json"
                if path.exists():  # resume: keep finished runs
                    records.append(json.loads(path.read_text()))
                    continue
                cfg = ForecastConfig(dataset=ds, model=model, seq_len=args.seq_len, pred_len=h,
                                     batch_size=args.batch_size, lr=args.lr.get(model), epochs=args.epochs,
                                     patience=args.patience, seed=args.seed, root=args.data_root,
                                     max_train_batches=args.max_train_batches,
                                     model_kwargs=args.model_kwargs.get(model, {}), device=args.device,
                                     loss=args.loss)
                rec = train_and_evaluate(cfg)
                save_record(rec, path)
                records.append(rec)
                print(f"{ds} {model} H={h}: test MSE {rec['test_mse']:.4f} MAE {rec['test_mae']:.4f}")
    rows = summary_rows(records)
    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["dataset", "model", "horizon", "mse", "mae"])
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        if r["horizon"] == "avg":
            print(f"{r['dataset']} {r['model']}: average MSE {r['mse']:.4f} MAE {r['mae']:.4f}")
    return 0
