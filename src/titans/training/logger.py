"""Run logs: a CSV file (always) and TensorBoard (only when ``tensorboard`` is importable)."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ["step", "tokens", "split", "loss", "ppl", "bpb", "lr", "grad_norm", "tokens_per_s", "elapsed_s"]


class RunLogger:
    """Appends rows to ``<out_dir>/log.csv``; mirrors scalars to TensorBoard when available."""

    def __init__(self, out_dir: str | Path, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(out_dir) / "log.csv"
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="")
        self._csv = csv.DictWriter(self._fh, fieldnames=COLUMNS)
        if new:
            self._csv.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))
        except ImportError:
            self.tb = None

    def log(self, **row) -> None:
        if not self.enabled:
            return
        self._csv.writerow({k: row.get(k, "") for k in COLUMNS})
        self._fh.flush()
        if self.tb is not None:
            for key in ("loss", "ppl", "bpb", "lr", "grad_norm", "tokens_per_s"):
                if row.get(key) not in (None, ""):
                    self.tb.add_scalar(f"{row['split']}/{key}", float(row[key]), row["step"])

    def close(self) -> None:
        if self.enabled:
            self._fh.close()
            if self.tb is not None:
                self.tb.close()
