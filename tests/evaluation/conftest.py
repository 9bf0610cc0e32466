"""Data for the evaluation tests: ``../shared/data`` (or ``$TITANS_DATA``) when it holds the
Gutenberg test split and the ETT files; otherwise a stand-in built once per session — the
package's embedded Gutenberg books as the haystack and synthetic hourly series with the ETT
layout (17,420 rows, ``date`` + 7 channels) — so the tests also run on a bare clone."""

import gzip
import os
import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest

from titans.evaluation.niah import default_data_root

ETT_COLUMNS = ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def _have_data(root) -> bool:
    return (root / "gutenberg" / "test.jsonl.gz").exists() and all(
        (root / "ett" / f"ETTh{i}.csv").exists() for i in (1, 2))


def _synthetic_ett(path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 17420
    t = np.arange(n)
    cols = []
    for c in range(7):
        noise = np.zeros(n)
        eps = rng.normal(0, 0.3, n)
        for i in range(1, n):  # AR(1) noise
            noise[i] = 0.9 * noise[i - 1] + eps[i]
        cols.append(5 + c + 2 * np.sin(2 * np.pi * t / 24 + c) + np.sin(2 * np.pi * t / 168)
                    + 0.0002 * t * (c - 3) + noise)
    start = datetime(2016, 7, 1)
    with open(path, "w") as fh:
        fh.write(",".join(ETT_COLUMNS) + "\n")
        for i in range(n):
            stamp = (start + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")
            fh.write(stamp + "," + ",".join(f"{col[i]:.4f}" for col in cols) + "\n")


@pytest.fixture(scope="session", autouse=True)
def evaluation_data(tmp_path_factory):
    if _have_data(default_data_root()):
        yield default_data_root()
        return
    from titans.data import corpus

    root = tmp_path_factory.mktemp("titans_data")
    (root / "gutenberg").mkdir()
    (root / "ett").mkdir()
    with gzip.open(root / "gutenberg" / "test.jsonl.gz", "wb") as out:
        for src in (corpus.TRAIN, corpus.VALIDATION):
            with gzip.open(src, "rb") as fh:
                shutil.copyfileobj(fh, out)
    for i in (1, 2):
        _synthetic_ett(root / "ett" / f"ETTh{i}.csv", seed=i)
    old = os.environ.get("TITANS_DATA")
    os.environ["TITANS_DATA"] = str(root)
    yield root
    if old is None:
        os.environ.pop("TITANS_DATA", None)
    else:
        os.environ["TITANS_DATA"] = old
