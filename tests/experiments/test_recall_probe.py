"""The MQAR recall probe: its samples, and one short run of every model it trains."""

from __future__ import annotations

import json
import sys

import pytest
import torch


@pytest.fixture(scope="module")
def mqar(load_script):
    return load_script("mqar", "experiments/recall_probe/mqar.py")


def test_batch_targets_are_each_queried_keys_value(mqar):
    torch.manual_seed(0)
    P, gap = 4, 5
    seq, tgt = mqar.batch(3, P, gap)
    assert seq.shape == tgt.shape == (3, 2 * P + gap + 1 + 2 * P)
    for s, t in zip(seq.tolist(), tgt.tolist()):
        pairs = dict(zip(s[0:2 * P:2], s[1:2 * P:2]))
        assert len(pairs) == P and all(ord("A") <= c <= ord("Z") for c in s[2 * P:2 * P + gap])
        assert s[2 * P + gap] == ord("|")
        queries = s[2 * P + gap + 1:]
        for i in range(P):  # the target sits on each repeated key and names that key's value
            key, val = queries[2 * i], queries[2 * i + 1]
            assert t[2 * P + gap + 1 + 2 * i] == val == pairs[key]
        assert sum(x != -100 for x in t) == P


@pytest.mark.parametrize("model", ["transformer", "lmm", "mac", "mag", "mal"])
def test_every_model_runs_and_writes_its_test(mqar, model, tmp_path, monkeypatch):
    out = tmp_path / f"{model}.json"
    argv = ["--model", model, "--steps", "2", "--pairs", "2", "--batch", "2", "--train-gap", "4",
            "--test-gaps", "0", "40", "--test-samples", "4", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["mqar.py", *argv])
    mqar.main()
    run = json.loads(out.read_text())
    assert run["args"]["model"] == model and set(run["test"]) == {"0", "40"}
    assert all(0.0 <= a <= 1.0 for a in run["test"].values())
