"""Validation-selected hyper-parameter sweep of the LMM forecaster and the PatchTST baseline.

Every configuration of a small grid (width × depth per model) trains on every dataset and horizon
with the harness of ``titans eval forecast`` (same seed, schedule and early stopping). The
configuration is then chosen **on validation MSE only** — one per (dataset, model), the lowest
validation MSE averaged over the four horizons, and, as a second reading, one per horizon — and
its test MSE / MAE is reported. Test numbers never take part in a choice.

    # train (resumable: finished runs are kept; jobs spread over GPUs × processes)
    python3 experiments/forecasting/sweep.py run --out experiments/forecasting/sweep \
        --devices cuda:0 cuda:1 --procs-per-device 3 --deadline 540
    # table (markdown to stdout, selection.json beside the runs)
    python3 experiments/forecasting/sweep.py report --out experiments/forecasting/sweep
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

DATASETS = ("ETTh1", "ETTh2")
HORIZONS = (96, 192, 336, 720)
DEFAULTS = {"lmm": "d32_l1", "patchtst": "d16_l3"}  # the main grid's configurations


def grid() -> dict[str, dict[str, dict]]:
    """model → {tag: constructor overrides}. Head width 16 (LMM) and d_model/8 heads ≥ 4 (PatchTST,
    as its paper's larger configuration); the defaults of the main grid are the members
    ``d32_l1`` (LMM) and ``d16_l3`` (PatchTST)."""
    lmm = {f"d{d}_l{n}": {"d_model": d, "n_layers": n, "num_heads": d // 16}
           for d in (32, 64, 128) for n in (1, 2)}
    pst = {f"d{d}_l{n}": {"d_model": d, "n_layers": n, "n_heads": max(4, d // 8), "d_ff": max(128, 2 * d)}
           for d in (16, 64, 128) for n in (2, 3)}
    return {"lmm": lmm, "patchtst": pst}


def run_path(out: Path, ds: str, model: str, h: int, tag: str) -> Path:
    return out / f"{ds}_{model}_{h}_{tag}.json"


def jobs(out: Path, models: list[str]) -> list[tuple]:
    """Pending (dataset, model, horizon, tag, overrides), one configuration after another (the
    main grid's defaults first, the models interleaved), so a sweep cut short leaves whole
    configurations behind rather than scattered runs."""
    per_model = []
    for model in models:
        tags = sorted(grid()[model], key=lambda t: t != DEFAULTS[model])
        per_model.append([(model, t) for t in tags])
    order = [mt for group in zip(*per_model) for mt in group]
    todo = []
    for model, tag in order:
        kw = grid()[model][tag]
        for ds in DATASETS:
            for h in HORIZONS:
                if not run_path(out, ds, model, h, tag).exists():
                    todo.append((ds, model, h, tag, kw))
    return todo


def worker(todo: list[tuple], device: str, out: str, deadline: float, seed: int,
           max_batches: int | None, root: str | None) -> None:
    import torch

    from titans.evaluation.forecasting.harness import ForecastConfig, save_record, train_and_evaluate

    torch.set_num_threads(1)
    for ds, model, h, tag, kw in todo:
        if time.time() > deadline:
            return
        cfg = ForecastConfig(dataset=ds, model=model, pred_len=h, seed=seed, model_kwargs=kw, device=device,
                             max_train_batches=max_batches, epochs=2 if max_batches else 10, root=root)
        rec = train_and_evaluate(cfg, log=lambda *_: None)
        rec["tag"] = tag
        save_record(rec, run_path(Path(out), ds, model, h, tag))
        print(f"{device} {ds} {model} {tag} H={h}: val {rec['val_mse']:.4f} test {rec['test_mse']:.4f} "
              f"({rec['train_seconds']:.0f}s)", flush=True)


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = jobs(out, args.models)
    slots = [d for d in args.devices for _ in range(args.procs_per_device)]
    deadline = time.time() + args.deadline
    print(f"{len(todo)} runs pending over {len(slots)} processes", flush=True)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(todo[i::len(slots)], dev, str(out), deadline, args.seed,
                                              args.max_train_batches, args.data_root))
             for i, dev in enumerate(slots)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print(f"{len(jobs(out, args.models))} runs still pending", flush=True)


def select(records: list[dict]) -> dict:
    """Validation-only choices: per (dataset, model) one tag for all horizons, and one per horizon."""
    by = {}
    for r in records:
        c = r["config"]
        by.setdefault((c["dataset"], c["model"]), {}).setdefault(r["tag"], {})[c["pred_len"]] = r
    result = {}
    for (ds, model), tags in sorted(by.items()):
        complete = {t: hs for t, hs in tags.items() if set(hs) == set(HORIZONS)}
        if not complete:
            continue
        mean = lambda hs, k: sum(hs[h][k] for h in HORIZONS) / len(HORIZONS)  # noqa: E731
        best = min(complete, key=lambda t: mean(complete[t], "val_mse"))
        per_h = {h: min(complete, key=lambda t: complete[t][h]["val_mse"]) for h in HORIZONS}
        result[f"{ds}/{model}"] = {
            "one_config": {"tag": best, "val_mse": mean(complete[best], "val_mse"),
                           "test_mse": mean(complete[best], "test_mse"),
                           "test_mae": mean(complete[best], "test_mae"),
                           "per_horizon": {h: [complete[best][h]["test_mse"], complete[best][h]["test_mae"]]
                                           for h in HORIZONS}},
            "per_horizon_config": {"tags": per_h, **{
                k: sum(complete[per_h[h]][h][k] for h in HORIZONS) / len(HORIZONS)
                for k in ("test_mse", "test_mae")}},
            "all": {t: {"val_mse": mean(hs, "val_mse"), "test_mse": mean(hs, "test_mse"),
                        "params": {h: hs[h]["params"] for h in HORIZONS}} for t, hs in complete.items()},
        }
    return result


def report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*_*_*_*.json"))]
    sel = select(records)
    (out / "selection.json").write_text(json.dumps(sel, indent=1) + "\n")
    print("| dataset / model | chosen (val) | val MSE | test MSE / MAE, one config | per-horizon choice "
          "| test MSE / MAE, per-horizon choice |")
    print("|---|---|---|---|---|---|")
    for key, s in sel.items():
        o, p = s["one_config"], s["per_horizon_config"]
        tags = "/".join(p["tags"][h] for h in HORIZONS)
        print(f"| {key} | {o['tag']} | {o['val_mse']:.4f} | {o['test_mse']:.3f} / {o['test_mae']:.3f} "
              f"| {tags} | {p['test_mse']:.3f} / {p['test_mae']:.3f} |")
    print("\nEvery complete configuration (mean over horizons):")
    for key, s in sel.items():
        for t, a in sorted(s["all"].items(), key=lambda kv: kv[1]["val_mse"]):
            print(f"  {key} {t}: val {a['val_mse']:.4f} test {a['test_mse']:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--models", nargs="+", default=["lmm", "patchtst"], choices=["lmm", "patchtst"])
    r.add_argument("--devices", nargs="+", default=["cuda:0"])
    r.add_argument("--procs-per-device", type=int, default=2)
    r.add_argument("--deadline", type=float, default=540.0, help="seconds after which no run starts")
    r.add_argument("--seed", type=int, default=2021)
    r.add_argument("--max-train-batches", type=int, default=None,
                   help="smoke runs: 2 epochs of this many batches")
    r.add_argument("--data-root", default=None,
                   help="folder with ETTh1.csv/ETTh2.csv (default ../shared/data/ett)")
    r.set_defaults(func=run)
    s = sub.add_parser("report")
    s.add_argument("--out", required=True)
    s.set_defaults(func=report)
    args = ap.parse_args()
    if getattr(args, "procs_per_device", 1) < 1:
        ap.error("--procs-per-device must be >= 1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.func(args)


if __name__ == "__main__":
    main()
