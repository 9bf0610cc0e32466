"""Byte tokenizer and the ``tokenizers`` byte-level BPE wrapper."""

from __future__ import annotations

import numpy as np
import pytest

from titans.data import BPETokenizer, ByteTokenizer, load_tokenizer, pack_documents, train_bpe

TEXT = ["The quick brown fox jumps over the lazy dog. ", "Ünïcödé — naïve café, 東京. ",
        "It was the best of times, it was the worst of times. "] * 30


def test_byte_tokenizer_roundtrip(tmp_path):
    tok = ByteTokenizer()
    s = "héllo\x00 wörld"
    ids = tok.encode(s)
    assert max(ids) < 256 and 0 not in ids  # NUL is reserved as the separator
    assert tok.decode(ids) == s.replace("\x00", "")
    assert tok.token_bytes().sum() == 255
    tok.save(tmp_path)
    assert isinstance(load_tokenizer(tmp_path), ByteTokenizer)
    assert isinstance(load_tokenizer("byte"), ByteTokenizer)


def test_bpe_train_save_load_and_bytes(tmp_path):
    tok = train_bpe(iter(TEXT), vocab_size=400, min_frequency=2)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size <= 400
    s = "The naïve fox, 東京! Zebra-x 123"  # includes bytes unseen as merges
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert len(ids) < len(s.encode("utf-8"))  # merges were learnt
    tb = tok.token_bytes()
    assert tb[tok.eos_id] == 0
    assert int(tb[ids].sum()) == len(s.encode("utf-8"))  # bytes per token add up exactly
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode(s) == ids and again.eos_id == tok.eos_id
    assert load_tokenizer(tmp_path / "tokenizer.json").encode(s) == ids
    packed = pack_documents(["ab", "cd"], tok)
    assert packed.dtype == np.uint16 and (packed == tok.eos_id).sum() == 2


def test_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="neither"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(iter(TEXT), vocab_size=100)
