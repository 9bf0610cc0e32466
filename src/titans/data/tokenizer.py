"""Tokenisers: byte-level (vocab 256, no files) and any ``tokenizers`` BPE (``tokenizer.json``).

Both expose ``vocab_size``, ``eos_id`` (the document separator), ``encode``/``decode`` and
``token_bytes()``: the number of UTF-8 bytes each token id stands for, used for bits per byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_EOS = "<|endoftext|>"


class ByteTokenizer:
    """UTF-8 bytes as tokens (vocab 256). Byte 0 (NUL, absent from text) separates documents."""

    name = "byte"
    vocab_size = 256
    eos_id = 0

    def encode(self, text: str) -> list[int]:
        return list(text.replace("\x00", "").encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        """``[N]`` uint8 token ids of ``text`` (fast path used by the packer)."""
        return np.frombuffer(text.replace("\x00", "").encode("utf-8"), dtype=np.uint8)

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids if int(i) != self.eos_id).decode("utf-8", errors="replace")

    def token_bytes(self) -> np.ndarray:
        """``[256]`` bytes per token: 1, except 0 for the separator."""
        out = np.ones(256, dtype=np.int64)
        out[self.eos_id] = 0
        return out

    def save(self, directory: str | Path) -> None:
        Path(directory, TOKENIZER_CONFIG).write_text(json.dumps({"type": "byte"}) + "\n")


def _byte_level_unicode() -> dict[str, int]:
    """GPT-2's printable-character alphabet for bytes: char -> byte (one char per byte)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars)}


class BPETokenizer:
    """A ``tokenizers.Tokenizer`` (e.g. a byte-level BPE) with a document separator ``eos_token``."""

    name = "bpe"

    def __init__(self, tokenizer, eos_token: str = DEFAULT_EOS):
        self.tok = tokenizer
        eos = tokenizer.token_to_id(eos_token)
        if eos is None:
            raise ValueError(f"eos_token {eos_token!r} is not in the tokenizer's vocabulary; add it as a "
                             "special token or pass the name of the tokenizer's separator")
        self.eos_token = eos_token
        self.eos_id = int(eos)
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))

    @classmethod
    def from_file(cls, path: str | Path, eos_token: str = DEFAULT_EOS) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), eos_token)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def token_bytes(self) -> np.ndarray:
        """``[V]`` UTF-8 bytes per token; special tokens count 0."""
        alphabet = _byte_level_unicode()
        special = {t.content for t in self.tok.get_added_tokens_decoder().values() if t.special}
        out = np.zeros(self.vocab_size, dtype=np.int64)
        for token, idx in self.tok.get_vocab(with_added_tokens=True).items():
            if token in special:
                continue
            if all(c in alphabet for c in token):  # byte-level BPE: one char per byte
                out[idx] = len(token)
            else:
                out[idx] = len(self.tok.decode([idx]).encode("utf-8"))
        return out

    def save(self, directory: str | Path) -> None:
        self.tok.save(str(Path(directory, TOKENIZER_FILE)))
        Path(directory, TOKENIZER_CONFIG).write_text(
            json.dumps({"type": "bpe", "eos_token": self.eos_token}) + "\n")


Tokenizer = ByteTokenizer | BPETokenizer


def load_tokenizer(spec: str | Path) -> Tokenizer:
    """``"byte"``, a ``tokenizer.json`` file, or a directory holding one (or a byte tokenizer config)."""
    if str(spec) == "byte":
        return ByteTokenizer()
    path = Path(spec)
    if path.is_dir():
        cfg_path = path / TOKENIZER_CONFIG
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        if cfg.get("type") == "byte":
            return ByteTokenizer()
        if (path / TOKENIZER_FILE).exists():
            return BPETokenizer.from_file(path / TOKENIZER_FILE, cfg.get("eos_token", DEFAULT_EOS))
        raise ValueError(f"tokenizer directory {str(path)!r} has neither {TOKENIZER_FILE} nor a byte "
                         f"{TOKENIZER_CONFIG}")
    if path.is_file():
        return BPETokenizer.from_file(path)
    raise ValueError(f"tokenizer must be 'byte', a tokenizer.json file or a directory holding one; "
                     f"{str(spec)!r} does not exist")


def train_bpe(texts: Iterator[str], vocab_size: int = 32000, min_frequency: int = 2,
              eos_token: str = DEFAULT_EOS, show_progress: bool = False) -> BPETokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenisation, 256-byte base alphabet) offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not isinstance(vocab_size, int) or vocab_size < 257 + 1:
        raise ValueError(f"vocab_size must be an int > 257 (256 bytes + separator), got {vocab_size!r}")
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"min_frequency must be a positive int, got {min_frequency!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[eos_token], show_progress=show_progress,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return BPETokenizer(tok, eos_token)
