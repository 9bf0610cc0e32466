import re

import pytest

from titans.data.tokenizer import ByteTokenizer, train_bpe
from titans.evaluation import niah
from titans.evaluation.niah import NIAHGenerator, depth_grid, evaluate, string_match, summarise

BYTE = ByteTokenizer()
NEEDLE_RE = re.compile(r"One of the special magic (\w+) for ([\w-]+) is: ([\w-]+)\.")


@pytest.fixture(scope="module")
def bpe():
    texts = [niah.NOISE * 20, "One of the special magic numbers for quiet-harbor is: 1234567."] + [
        " ".join(niah._book_sentences(str(niah.default_gutenberg_test()), i)[:300]) for i in range(3)]
    return train_bpe(iter(texts), vocab_size=600)


@pytest.mark.parametrize("variant", sorted(niah.VARIANTS))
@pytest.mark.parametrize("length", [512, 3000])
def test_needle_once_at_depth_byte(variant, length):
    gen = NIAHGenerator(BYTE.encode, seed=3)
    for depth in (0.0, 0.25, 0.5, 0.9, 1.0):
        s = gen.sample(variant, length, depth)
        assert length * 0.9 <= len(s.input_ids) <= length
        assert BYTE.decode(s.input_ids) == s.prompt
        found = NEEDLE_RE.findall(s.prompt)
        assert len(found) == 1, found                      # exactly one needle
        assert s.prompt.count(s.answer) == 1               # its value nowhere else
        kind, key, value = found[0]
        assert (key, value) == (s.key, s.answer)
        assert s.prompt.count(s.key) == 3                  # needle, question, answer prefix
        assert s.prompt.endswith(f"for {s.key} is:")
        # depth measured independently: characters of haystack before the needle / all haystack
        head = niah.PREFIX.format(type=niah.VARIANTS[variant]["type"])
        tail = s.prompt.index("\nWhat is the special magic")
        hay = s.prompt[len(head):tail]
        at = hay.index(s.needle)
        measured = at / max(1, len(hay) - len(s.needle) - 1)
        sentence = max(len(x) for x in re.split(r"(?<=[.!?])\s", hay)) + 1
        assert abs(measured - depth) <= sentence / len(hay) + 1e-6, (depth, measured)
        assert abs(s.depth_actual - measured) < 0.02


@pytest.mark.parametrize("variant", sorted(niah.VARIANTS))
def test_any_tokenizer_bpe(variant, bpe):
    gen = NIAHGenerator(bpe.encode, seed=0)
    s = gen.sample(variant, 2048, 0.4)
    assert 0.9 * 2048 <= len(s.input_ids) <= 2048
    assert s.input_ids == bpe.encode(s.prompt)
    assert len(NEEDLE_RE.findall(bpe.decode(s.input_ids))) == 1
    assert abs(s.depth_actual - 0.4) < 0.1


def test_determinism_by_seed():
    a = NIAHGenerator(BYTE.encode, seed=7).sample("uuid", 1500, 0.3, index=2)
    b = NIAHGenerator(BYTE.encode, seed=7).sample("uuid", 1500, 0.3, index=2)
    c = NIAHGenerator(BYTE.encode, seed=8).sample("uuid", 1500, 0.3, index=2)
    d = NIAHGenerator(BYTE.encode, seed=7).sample("uuid", 1500, 0.3, index=3)
    assert a == b
    assert a.prompt != c.prompt and a.answer != c.answer
    assert a.answer != d.answer
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a.answer)
    n = NIAHGenerator(BYTE.encode, seed=7).sample("number", 1500, 0.3)
    assert re.fullmatch(r"\d{7}", n.answer)


def test_long_context_64k():
    s = NIAHGenerator(BYTE.encode, seed=1).sample("number", 65536, 0.75)
    assert 65000 <= len(s.input_ids) <= 65536
    assert len(NEEDLE_RE.findall(s.prompt)) == 1
    assert abs(s.depth_actual - 0.75) < 0.01


def _oracle(tokenizer, corrupt=False):
    def generate(ids, max_new):
        value = NEEDLE_RE.search(tokenizer.decode(ids)).group(3)
        if corrupt:
            value = value[::-1]
        return tokenizer.encode(" " + value + ".\n")[:max_new]
    return generate


def test_answer_recoverable_and_scored():
    gen = NIAHGenerator(BYTE.encode, seed=5)
    samples = list(gen.sweep("passkey", [600, 900], depth_grid(3), samples_per_cell=2))
    assert len(samples) == 12
    good = evaluate(_oracle(BYTE), BYTE.decode, samples, max_new_tokens=64)
    assert all(r["score"] == 1.0 for r in good)
    bad = evaluate(_oracle(BYTE, corrupt=True), BYTE.decode, samples, max_new_tokens=64)
    assert all(r["score"] == 0.0 for r in bad)
    short = evaluate(_oracle(BYTE), BYTE.decode, samples, max_new_tokens=4)  # truncated answer
    assert all(r["score"] == 0.0 for r in short)
    table = summarise(good + bad)
    assert [(r["length"], r["accuracy"], r["count"]) for r in table["accuracy"]] == [(600, 50.0, 12),
                                                                                    (900, 50.0, 12)]
    assert len(table["heatmap"]) == 6


def test_string_match():
    assert string_match(" 1234567.", "1234567") == 1.0
    assert string_match(" 123456", "1234567") == 0.0
    assert string_match("ABC-def", "abc-DEF") == 1.0


def test_errors():
    gen = NIAHGenerator(BYTE.encode)
    with pytest.raises(ValueError, match="variant"):
        gen.sample("words", 1000, 0.5)
    with pytest.raises(ValueError, match="depth"):
        gen.sample("passkey", 1000, 1.5)
    with pytest.raises(ValueError, match="length"):
        gen.sample("passkey", 50, 0.5)
    with pytest.raises(ValueError, match="haystack_path"):
        NIAHGenerator(BYTE.encode, haystack_path="/nonexistent.jsonl.gz").sample("uuid", 1000, 0.5)
    assert depth_grid(1) == [0.5] and depth_grid(5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_teacher_forced_exact_match_with_oracles():
    import torch

    from titans.evaluation.niah import teacher_forced_exact_match, teacher_forced_scores

    gen = NIAHGenerator(BYTE.encode, seed=2)
    samples = [gen.sample(v, n, d) for v in ("passkey", "uuid") for n in (500, 700) for d in (0.0, 1.0)]

    def oracle(shift, corrupt_last=False):
        def logits(ids):
            nxt = torch.roll(ids, -1, dims=1) if shift else ids.clone()
            if corrupt_last:  # wrong on the value's last character only ("." is the last token)
                lengths = (ids != 0).sum(1)
                nxt[torch.arange(ids.shape[0]), lengths - 3] = ord("#")
            return torch.nn.functional.one_hot(nxt, 256).float()
        return logits

    assert teacher_forced_exact_match(oracle(True), samples, BYTE.encode, batch_size=3) == [1.0] * 8
    assert teacher_forced_exact_match(oracle(False), samples, BYTE.encode, batch_size=3) == [0.0] * 8
    assert teacher_forced_exact_match(oracle(True, True), samples, BYTE.encode, batch_size=3) == [0.0] * 8
    # partial credit: every token of the value but its last one is right
    partial = teacher_forced_scores(oracle(True, True), samples, BYTE.encode, batch_size=3)
    for sample, score in zip(samples, partial):
        n = len(BYTE.encode(" " + sample.answer))
        assert score["exact"] == 0.0 and score["token_accuracy"] == pytest.approx((n - 1) / n)
    perfect = teacher_forced_scores(oracle(True), samples, BYTE.encode)
    assert [s["token_accuracy"] for s in perfect] == [1.0] * 8
