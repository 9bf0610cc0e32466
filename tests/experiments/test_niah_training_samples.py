"""The S-NIAH training-sample builders of ``experiments/niah/run_niah.py``: every supervised
span is exactly the text the model must recall (a wrong offset trains nothing, silently)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from titans.evaluation.niah import NIAHGenerator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def haystack(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = "the river ran past old stone walls while evening light fell on quiet fields".split()
    path = tmp_path_factory.mktemp("hay") / "books.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for _ in range(3):
            text = " ".join(" ".join(rng.choice(words) for _ in range(12)).capitalize() + "."
                            for _ in range(400))
            fh.write(json.dumps({"text": text}) + "\n")
    return path


def test_multi_needle_spans_are_the_answers(run_niah, haystack):
    gen = NIAHGenerator(run_niah.TOK.encode, seed=3, haystack_path=haystack)
    ids, spans = run_niah.multi_needle_example(gen, random.Random(2), 1500, 4, ["number"])
    text = bytes(ids).decode()
    assert len(spans) == 4
    for lo, hi in spans:
        answer = bytes(ids[lo:hi]).decode()
        assert answer.startswith(" ") and answer.endswith(".")
        value = answer[1:-1]
        assert value.isdigit() and text.count(f"is: {value}.") == 2  # the needle and the answer


def test_single_needle_answer_follows_the_prompt(run_niah, haystack):
    gen = NIAHGenerator(run_niah.TOK.encode, seed=3, haystack_path=haystack)
    ids, a = run_niah.niah_example(gen, random.Random(5), 800, 0, ["passkey"])
    value = bytes(ids[a:]).decode()[1:-1]
    prompt = bytes(ids[:a]).decode()
    assert value.isdigit() and prompt.count(value) == 1 and prompt.endswith("is:")


def test_train_variants_choose_the_training_needles_only(run_niah, haystack):
    """``--train-variants uuid``: every training answer is a UUID while ``--variants`` (the test)
    keeps all three; without it the training needles follow ``--variants``."""
    gen = NIAHGenerator(run_niah.TOK.encode, seed=3, haystack_path=haystack)
    base = ["--haystack", str(haystack), "--train-len", "600", "--min-train-len", "400"]
    args = run_niah.build_parser().parse_args([*base, "--train-variants", "uuid"])
    make = run_niah.niah_examples(gen, args)
    answers = []
    for i in range(8):
        ids, start = make(random.Random(i), i)
        answers.append(bytes(ids[start:]).decode()[1:-1])
    assert args.variants == list(run_niah.VARIANTS)
    assert all(len(a) == 36 and a.count("-") == 4 for a in answers), answers
    args = run_niah.build_parser().parse_args([*base, "--variants", "number"])
    make = run_niah.niah_examples(gen, args)
    for i in range(4):
        ids, start = make(random.Random(i), i)
        assert bytes(ids[start:]).decode()[1:-1].isdigit()
    with pytest.raises(SystemExit):
        run_niah.build_parser().parse_args([*base, "--train-variants", "essay"])


def test_harness_test_records_exact_and_token_accuracy(run_niah, haystack):
    """``test()`` scores every (variant, length, depth, sample) with the exact match and the
    share of the value's tokens right; a model that copies its input scores 0 on both (it
    predicts the current byte, never the next)."""
    import torch

    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids):
            return type("Out", (), {"logits": torch.nn.functional.one_hot(ids, 256).float()})()

    args = run_niah.build_parser().parse_args(
        ["--variants", "passkey", "uuid", "--test-lengths", "600", "--depths", "2", "--samples", "2"])
    gen = NIAHGenerator(run_niah.TOK.encode, seed=4321, haystack_path=haystack)
    records = run_niah.test(Echo(), args, gen, torch.device("cpu"))
    assert len(records) == 2 * 1 * 2 * 2
    assert {r["variant"] for r in records} == {"passkey", "uuid"}
    assert all(r["score"] == 0.0 and 0.0 <= r["token_accuracy"] < 0.5 for r in records)
