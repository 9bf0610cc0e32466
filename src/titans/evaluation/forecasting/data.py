"""ETTh1 / ETTh2 with the standard borders and train-fit standardisation.

Rows (hourly, 30-day months): train [0, 8640) = 12 months, validation [8640 − L, 11520),
test [11520 − L, 14400) = 4 + 4 months; each split of a window set starts L rows early so the
first target is the first row of the split. Every channel is standardised with the mean and
(population) standard deviation of the training rows only. A window is ``x = rows[i : i+L]``,
``y = rows[i+L : i+L+H]``; all 7 channels are predicted (the multivariate "M" setting).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from titans.evaluation.niah import default_data_root

DATASETS = ("ETTh1", "ETTh2")
SPLITS = ("train", "val", "test")
MONTH = 30 * 24
TRAIN_END, VAL_END, TEST_END = 12 * MONTH, 16 * MONTH, 20 * MONTH  # 8640, 11520, 14400


def default_ett_dir() -> Path:
    return default_data_root() / "ett"


def read_ett(name: str, root: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """``([N, 7] float64 values, column names)`` of ``{root}/{name}.csv`` (date column dropped)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    path = Path(root if root is not None else default_ett_dir()) / f"{name}.csv"
    values, cols = _read_csv(str(path))
    return values.copy(), list(cols)


@lru_cache(maxsize=4)
def _read_csv(path_str: str) -> tuple[np.ndarray, tuple[str, ...]]:
    path = Path(path_str)
    if not path.exists():
        raise ValueError(f"ETT file {str(path)!r} does not exist (set root or $TITANS_DATA)")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if header[0] != "date":
        raise ValueError(f"{path}: expected a leading 'date' column, got {header[:2]}")
    return np.asarray([[float(v) for v in r[1:]] for r in body], dtype=np.float64), tuple(header[1:])


def split_bounds(split: str, seq_len: int) -> tuple[int, int]:
    """Row range ``[start, end)`` of a split's windows (start includes the L-row look-back)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return {"train": (0, TRAIN_END), "val": (TRAIN_END - seq_len, VAL_END),
            "test": (VAL_END - seq_len, TEST_END)}[split]


@dataclass
class Scaler:
    """Per-channel standardisation fit on the training rows."""

    mean: np.ndarray  # [C]
    std: np.ndarray   # [C]

    @classmethod
    def fit(cls, train_rows: np.ndarray) -> Scaler:
        return cls(train_rows.mean(0), train_rows.std(0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean


class ETTWindows(Dataset):
    """Sliding windows of one split: item ``i`` is ``(x [L, C], y [H, C])`` float32 tensors."""

    def __init__(self, name: str, split: str, seq_len: int = 96, pred_len: int = 96,
                 root: str | Path | None = None, values: np.ndarray | None = None):
        for arg, v in (("seq_len", seq_len), ("pred_len", pred_len)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{arg} must be a positive int, got {v!r}")
        raw = read_ett(name, root)[0] if values is None else values
        if raw.shape[0] < TEST_END:
            raise ValueError(f"{name} has {raw.shape[0]} rows; the standard borders need {TEST_END}")
        self.scaler = Scaler.fit(raw[:TRAIN_END])
        start, end = split_bounds(split, seq_len)
        self.data = torch.from_numpy(self.scaler.transform(raw[start:end])).float()  # [rows, C]
        self.seq_len, self.pred_len, self.split = seq_len, pred_len, split
        if len(self) <= 0:
            raise ValueError(f"split {split!r} is too short for seq_len={seq_len} + pred_len={pred_len}")

    @property
    def channels(self) -> int:
        return self.data.shape[1]

    def __len__(self) -> int:
        return self.data.shape[0] - self.seq_len - self.pred_len + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.data[i:i + self.seq_len]
        return x, self.data[i + self.seq_len:i + self.seq_len + self.pred_len]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All windows at once: ``x [N, L, C]``, ``y [N, H, C]`` (views; no copy of the rows)."""
        x = self.data.unfold(0, self.seq_len, 1)[: len(self)].transpose(1, 2)
        y = self.data[self.seq_len:].unfold(0, self.pred_len, 1)[: len(self)].transpose(1, 2)
        return x, y
