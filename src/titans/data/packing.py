"""Packing documents into one token stream and cutting it into fixed-length training sequences.

Documents are concatenated with the tokenizer's separator after each one
(``doc₀ eos doc₁ eos ...``); sequence i is the window ``tokens[i·L : i·L + L + 1]`` (inputs are
its first L tokens, targets its last L), so a sequence may span a document boundary and
the model learns to predict the separator and restart after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .readers import is_token_source, iter_documents, list_files, load_token_file
from .tokenizer import BPETokenizer, ByteTokenizer, Tokenizer


def pack_documents(docs: Iterable[str], tokenizer: Tokenizer, max_tokens: int | None = None,
                   batch_docs: int = 64) -> np.ndarray:
    """``[N]`` token stream of ``docs``, each followed by ``tokenizer.eos_id``; cut at ``max_tokens``."""
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    parts: list[np.ndarray] = []
    total = 0
    eos = np.array([tokenizer.eos_id], dtype=dtype)

    def add(ids: np.ndarray) -> bool:
        nonlocal total
        parts.extend((ids.astype(dtype, copy=False), eos))
        total += ids.size + 1
        return max_tokens is not None and total >= max_tokens

    pending: list[str] = []
    for doc in docs:
        if isinstance(tokenizer, ByteTokenizer):
            if add(tokenizer.encode_array(doc)):
                break
            continue
        pending.append(doc)
        if len(pending) == batch_docs:
            if any(add(np.asarray(ids)) for ids in _encode_many(tokenizer, pending)):
                pending = []
                break
            pending = []
    for ids in _encode_many(tokenizer, pending) if pending else []:
        if add(np.asarray(ids)):
            break
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return out[:max_tokens] if max_tokens is not None else out


def _encode_many(tokenizer: Tokenizer, docs: list[str]) -> list[list[int]]:
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode_batch(docs)
    return [tokenizer.encode(d) for d in docs]


def load_tokens(path: str | Path, tokenizer: Tokenizer, text_field: str = "text",
                max_tokens: int | None = None) -> np.ndarray:
    """Token stream of a data source: token files are memory-mapped, text is tokenised and packed."""
    if is_token_source(path):
        arrays = [load_token_file(f) for f in list_files(path)]
        for f, a in zip(list_files(path), arrays):
            if a.size and int(a.max()) >= tokenizer.vocab_size:
                raise ValueError(f"token file {str(f)!r} holds id {int(a.max())} >= the tokenizer's "
                                 f"vocab_size {tokenizer.vocab_size}; was it made with another tokenizer?")
        tokens = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        return tokens[:max_tokens] if max_tokens is not None else tokens
    return pack_documents(iter_documents(path, text_field), tokenizer, max_tokens)


class PackedSequences:
    """Fixed-length windows over a token stream: item i = (input ``[L]``, target ``[L]``) int64."""

    def __init__(self, tokens: np.ndarray, seq_len: int):
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
        self.tokens = tokens
        self.seq_len = seq_len
        self.num_sequences = max(0, (len(tokens) - 1) // seq_len)

    def __len__(self) -> int:
        return self.num_sequences

    def batch(self, indices: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack the windows ``indices`` into ``(inputs [B, L], targets [B, L])``."""
        L = self.seq_len
        rows = [np.asarray(self.tokens[i * L: i * L + L + 1], dtype=np.int64) for i in indices]
        if not rows:
            raise ValueError("batch needs at least one index")
        for i in indices:
            if not 0 <= i < self.num_sequences:
                raise IndexError(f"sequence index {i} out of range [0, {self.num_sequences})")
        block = torch.from_numpy(np.stack(rows))
        return block[:, :-1].contiguous(), block[:, 1:].contiguous()


def split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Hold out the last ``val_fraction`` of a token stream as validation (contiguous tail)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    cut = int(round(len(tokens) * (1.0 - val_fraction)))
    return tokens[:cut], tokens[cut:]
