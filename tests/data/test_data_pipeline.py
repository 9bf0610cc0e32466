"""Readers, packing, splits, sampler, embedded corpus."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from titans.data import (
    ByteTokenizer,
    PackedSequences,
    ResumableSampler,
    corpus,
    iter_documents,
    list_files,
    load_token_file,
    load_tokens,
    pack_documents,
    save_token_file,
    split_tokens,
)


def write_jsonl(path, docs, gz=False, field="text"):
    lines = "".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs))
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(lines)
    else:
        path.write_text(lines, encoding="utf-8")


def test_readers_text_jsonl_gz_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha")
    write_jsonl(tmp_path / "sub" / "b.jsonl", ["beta", "gamma"])
    write_jsonl(tmp_path / "sub" / "c.jsonl.gz", ["délta"], gz=True)
    (tmp_path / "ignored.csv").write_text("x")
    assert [f.name for f in list_files(tmp_path)] == ["a.txt", "b.jsonl", "c.jsonl.gz"]
    assert list(iter_documents(tmp_path)) == ["alpha", "beta", "gamma", "délta"]


def test_reader_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        list_files(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("1")
    with pytest.raises(ValueError, match="unsupported"):
        list_files(tmp_path / "x.csv")
    write_jsonl(tmp_path / "d.jsonl", ["a"], field="body")
    with pytest.raises(ValueError, match="no field 'text'"):
        list(iter_documents(tmp_path / "d.jsonl"))
    assert list(iter_documents(tmp_path / "d.jsonl", text_field="body")) == ["a"]


def test_pack_documents_separators_and_cap():
    tok = ByteTokenizer()
    stream = pack_documents(["ab", "", "c"], tok)
    assert stream.tolist() == [97, 98, 0, 0, 99, 0]
    assert pack_documents(["abcdef", "gh"], tok, max_tokens=4).tolist() == [97, 98, 99, 100]


@pytest.mark.parametrize("name", ["t.npy", "t.u16.bin", "t.u32.bin"])
def test_token_files_roundtrip(tmp_path, name):
    tokens = np.array([5, 0, 255, 7, 0], dtype=np.int64)
    save_token_file(tmp_path / name, tokens)
    loaded = load_token_file(tmp_path / name)
    assert loaded.dtype == (np.uint32 if "u32" in name else np.uint16)
    assert loaded.tolist() == tokens.tolist()
    assert load_tokens(tmp_path / name, ByteTokenizer()).tolist() == tokens.tolist()


def test_token_file_errors(tmp_path):
    np.arange(10, dtype=np.uint16).tofile(tmp_path / "raw.bin")
    with pytest.raises(ValueError, match="dtype"):
        load_token_file(tmp_path / "raw.bin")
    assert load_token_file(tmp_path / "raw.bin", dtype="uint16").tolist() == list(range(10))
    save_token_file(tmp_path / "big.npy", np.array([300, 1]))
    with pytest.raises(ValueError, match="vocab_size"):
        load_tokens(tmp_path / "big.npy", ByteTokenizer())


def test_packed_sequences_shift_by_one():
    tokens = np.arange(23, dtype=np.uint16)
    seqs = PackedSequences(tokens, 5)
    assert len(seqs) == 4  # (23 - 1) // 5
    x, y = seqs.batch([3, 0])
    assert x.dtype == torch.int64 and x.shape == (2, 5)
    assert x[0].tolist() == [15, 16, 17, 18, 19] and y[0].tolist() == [16, 17, 18, 19, 20]
    assert torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(IndexError):
        seqs.batch([4])


def test_split_tokens():
    train, val = split_tokens(np.arange(100), 0.1)
    assert len(train) == 90 and val.tolist() == list(range(90, 100))
    with pytest.raises(ValueError, match="val_fraction"):
        split_tokens(np.arange(10), 0.0)


def test_sampler_epochs_are_permutations_and_deterministic():
    s = ResumableSampler(10, seed=3)
    stream = s.peek(0, 30)
    for e in range(3):
        assert sorted(stream[10 * e: 10 * e + 10]) == list(range(10))
    assert stream[:10] != stream[10:20]  # a fresh order each epoch
    assert ResumableSampler(10, seed=3).peek(0, 30) == stream
    assert ResumableSampler(10, seed=4).peek(0, 10) != stream[:10]


def test_sampler_resume_and_rank_shards():
    full = ResumableSampler(7, seed=1)
    batches = [full.next_global_batch(4) for _ in range(5)]
    resumed = ResumableSampler(7, seed=1)
    resumed.load_state_dict({**full.state_dict(), "position": 8})
    assert [resumed.next_global_batch(4) for _ in range(3)] == batches[2:]
    # ranks of a world of 2 split each global batch into contiguous halves
    ranks = [ResumableSampler(7, seed=1) for _ in range(2)]
    for b in batches:
        assert ranks[0].next_global_batch(4, 0, 2) + ranks[1].next_global_batch(4, 1, 2) == b
    with pytest.raises(ValueError, match="num_items"):
        resumed.load_state_dict({**full.state_dict(), "num_items": 8})
    with pytest.raises(ValueError, match="divisible"):
        resumed.next_global_batch(3, 0, 2)


def test_embedded_corpus_is_small_and_split_by_book():
    assert corpus.TRAIN.stat().st_size + corpus.VALIDATION.stat().st_size < 2_000_000
    train_titles = [json.loads(line)["title"] for line in gzip.open(corpus.TRAIN, "rt")]
    val_titles = [json.loads(line)["title"] for line in gzip.open(corpus.VALIDATION, "rt")]
    assert len(train_titles) == 5 and val_titles == ["Metamorphosis"]
    assert not set(train_titles) & set(val_titles)
    train = load_tokens(corpus.TRAIN, ByteTokenizer())
    assert 2_000_000 < len(train) < 3_000_000 and int((train == 0).sum()) == 5
