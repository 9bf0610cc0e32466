"""Readers: plain text files/folders, JSON lines (optionally gzip'd) and pre-tokenised token files.

Supported files: ``.txt``/``.md`` (one document per file), ``.jsonl``/``.jsonl.gz`` (one document
per line, text in ``text_field``), ``.npy`` (a 1-D uint16/uint32 array) and ``.bin`` raw token
files (``*.u16.bin`` or ``*.u32.bin``; other ``.bin`` names need ``dtype``). Folders are read
recursively in sorted order.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
TOKEN_SUFFIXES = (".npy", ".bin")
ALL_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + TOKEN_SUFFIXES


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    for kind, suffixes in (("jsonl", JSONL_SUFFIXES), ("text", TEXT_SUFFIXES), ("tokens", TOKEN_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return None


def list_files(path: str | Path) -> list[Path]:
    """The data files at ``path`` (a file, or a folder searched recursively, sorted)."""
    p = Path(path)
    if p.is_file():
        if _kind(p) is None:
            raise ValueError(f"unsupported data file {str(p)!r}; expected one of {ALL_SUFFIXES}")
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and _kind(f) is not None)
        if not files:
            raise ValueError(f"data folder {str(p)!r} holds no files with suffix in {ALL_SUFFIXES}")
        return files
    raise ValueError(f"data path {str(p)!r} does not exist")


def is_token_source(path: str | Path) -> bool:
    """True when every file at ``path`` is a pre-tokenised token file."""
    return all(_kind(f) == "tokens" for f in list_files(path))


def iter_documents(path: str | Path, text_field: str = "text") -> Iterator[str]:
    """Yield the documents (strings) stored at ``path``; token files are rejected."""
    for f in list_files(path):
        kind = _kind(f)
        if kind == "text":
            yield f.read_text(encoding="utf-8", errors="replace")
        elif kind == "jsonl":
            opener = gzip.open if f.name.lower().endswith(".gz") else open
            with opener(f, "rt", encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    if text_field not in record:
                        raise ValueError(f"{f}:{lineno} has no field {text_field!r} "
                                         f"(fields: {sorted(record)}); set text_field")
                    yield record[text_field]
        else:
            raise ValueError(f"{str(f)!r} is a token file; read it with load_token_file")


def load_token_file(path: str | Path, dtype: str | None = None) -> np.ndarray:
    """Memory-map a 1-D token file: ``.npy`` (dtype from its header) or raw ``.bin``."""
    p = Path(path)
    if p.name.endswith(".npy"):
        arr = np.load(p, mmap_mode="r")
    else:
        if dtype is None:
            if p.name.endswith(".u16.bin"):
                dtype = "uint16"
            elif p.name.endswith(".u32.bin"):
                dtype = "uint32"
            else:
                raise ValueError(f"cannot tell the dtype of {str(p)!r}: name it *.u16.bin / *.u32.bin "
                                 "or pass dtype='uint16'|'uint32'")
        if dtype not in ("uint16", "uint32"):
            raise ValueError(f"dtype must be 'uint16' or 'uint32', got {dtype!r}")
        arr = np.memmap(p, dtype=dtype, mode="r")
    if arr.ndim != 1 or arr.dtype not in (np.uint16, np.uint32):
        raise ValueError(f"token file {str(p)!r} must hold a 1-D uint16/uint32 array, got "
                         f"{arr.dtype} with shape {arr.shape}")
    return arr


def save_token_file(path: str | Path, tokens: np.ndarray) -> None:
    """Write ``tokens`` as ``.npy`` (or raw ``.u16.bin``/``.u32.bin``) with the smallest fitting dtype."""
    p = Path(path)
    dtype = np.uint16 if tokens.size == 0 or int(tokens.max()) < 2**16 else np.uint32
    tokens = np.ascontiguousarray(tokens, dtype=dtype)
    if p.name.endswith(".npy"):
        np.save(p, tokens)
    elif p.name.endswith((".u16.bin", ".u32.bin")):
        want = np.uint16 if p.name.endswith(".u16.bin") else np.uint32
        if dtype == np.uint32 and want == np.uint16:
            raise ValueError(f"token ids up to {int(tokens.max())} do not fit {str(p)!r} (uint16)")
        tokens.astype(want).tofile(p)
    else:
        raise ValueError(f"token file name must end with .npy, .u16.bin or .u32.bin, got {str(p)!r}")
