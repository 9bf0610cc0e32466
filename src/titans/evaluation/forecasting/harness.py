"""One training harness for every forecaster: Adam on MSE (or MAE / Huber: ``loss``), learning
rate halved each epoch (the Informer/Autoformer/DLinear "type1" schedule), early stopping on
validation MSE with the best weights restored, then MSE / MAE over every test window, step and
channel (standardised scale, no dropped last batch)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .data import ETTWindows
from .models import build_model

DEFAULT_LR = {"lmm": 1e-3, "dlinear": 5e-3, "patchtst": 1e-3}
LOSSES = {"mse": nn.functional.mse_loss, "mae": nn.functional.l1_loss, "huber": nn.functional.huber_loss}


@dataclass
class ForecastConfig:
    dataset: str = "ETTh1"
    model: str = "lmm"
    seq_len: int = 96
    pred_len: int = 96
    batch_size: int = 32
    lr: float | None = None          # None: DEFAULT_LR[model]
    epochs: int = 10
    patience: int = 3
    lr_decay: float = 0.5            # multiply the learning rate by this after every epoch
    seed: int = 2021
    root: str | None = None          # folder with ETTh1.csv / ETTh2.csv (default ../shared/data/ett)
    max_train_batches: int | None = None  # cap per epoch (tests / smoke runs)
    model_kwargs: dict = field(default_factory=dict)
    device: str = "cpu"              # "cpu", "cuda", "cuda:N" (the windows live there too)
    loss: str = "mse"                # training loss: mse | mae | huber (delta 1); selection is on val MSE

    def __post_init__(self) -> None:
        for name in ("seq_len", "pred_len", "batch_size", "epochs", "patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.lr is None:
            if self.model not in DEFAULT_LR:
                raise ValueError(f"model must be one of {sorted(DEFAULT_LR)}, got {self.model!r}")
            self.lr = DEFAULT_LR[self.model]
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if not (self.device == "cpu" or self.device.split(":")[0] == "cuda"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.device != "cpu" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available")


@torch.no_grad()
def evaluate(model: nn.Module, data: ETTWindows, batch_size: int = 256) -> dict[str, float]:
    """MSE and MAE over all windows, horizon steps and channels of ``data``."""
    model.eval()
    device = next(model.parameters()).device
    x, y = (t.to(device) for t in data.tensors())
    se = ae = 0.0
    for i in range(0, x.shape[0], batch_size):
        pred = model(x[i:i + batch_size].contiguous())
        err = pred - y[i:i + batch_size]
        se += err.double().pow(2).sum().item()
        ae += err.double().abs().sum().item()
    n = y.numel()
    return {"mse": se / n, "mae": ae / n}


def train_and_evaluate(cfg: ForecastConfig, log=print) -> dict:
    """Train ``cfg.model`` on ``cfg.dataset`` and return a JSON-ready record of the run."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    splits = {s: ETTWindows(cfg.dataset, s, cfg.seq_len, cfg.pred_len, cfg.root)
              for s in ("train", "val", "test")}
    train = splits["train"]
    model = build_model(cfg.model, cfg.seq_len, cfg.pred_len, train.channels, **cfg.model_kwargs)
    model.to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x_all, y_all = (t.to(cfg.device) for t in train.tensors())
    best, best_state, best_epoch, bad = math.inf, None, 0, 0
    history = []
    criterion = LOSSES[cfg.loss]
    start = time.time()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(x_all.shape[0], generator=gen)
        batches = range(0, x_all.shape[0], cfg.batch_size)
        if cfg.max_train_batches is not None:
            batches = list(batches)[: cfg.max_train_batches]
        total, count = 0.0, 0
        for i in batches:
            idx = order[i:i + cfg.batch_size].to(cfg.device)
            loss = criterion(model(x_all[idx].contiguous()), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)  # summed on the device: no sync per batch
            count += len(idx)
        total = float(total)
        val = evaluate(model, splits["val"])
        history.append({"epoch": epoch, f"train_{cfg.loss}": total / count, "val_mse": val["mse"],
                        "lr": opt.param_groups[0]["lr"], "seconds": time.time() - start})
        log(f"[{cfg.dataset} {cfg.model} H={cfg.pred_len}] epoch {epoch} train {cfg.loss} "
            f"{total / count:.4f} val {val['mse']:.4f} ({time.time() - start:.0f}s)")
        if val["mse"] < best:
            best, best_epoch, bad = val["mse"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
        for g in opt.param_groups:
            g["lr"] *= cfg.lr_decay
    model.load_state_dict(best_state)
    test = evaluate(model, splits["test"])
    return {"config": asdict(cfg), "params": sum(p.numel() for p in model.parameters()),
            "windows": {s: len(d) for s, d in splits.items()}, "best_epoch": best_epoch,
            "val_mse": best, "test_mse": test["mse"], "test_mae": test["mae"],
            "train_seconds": time.time() - start, "history": history}


def save_record(record: dict, path: str | Path) -> None:
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)  # atomic: a run killed mid-write leaves no half file that resume would trust
