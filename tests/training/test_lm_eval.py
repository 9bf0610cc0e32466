"""``titans.evaluation.lm``: segments / stream / sliding against direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from train_helpers import TINY_MODEL

from titans.data import ByteTokenizer
from titans.evaluation.lm import document_positions, evaluate_lm, plot_per_position
from titans.models import TitansLM, get_config


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = TitansLM(get_config("tiny-lmm", vocab_size=256, **TINY_MODEL)).eval()
    g = np.random.default_rng(0)
    tokens = g.integers(1, 256, size=257).astype(np.uint16)
    tokens[[40, 41, 150]] = 0  # document separators
    return model, tokens, ByteTokenizer().token_bytes()


def direct_nats(model, x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x.astype(np.int64))[None]
    with torch.no_grad():
        logits = model(t[:, :-1]).logits
    return F.cross_entropy(logits[0], t[0, 1:], reduction="none")


def test_segments_match_direct_loss(setup):
    model, tokens, tb = setup
    r = evaluate_lm(model, tokens, tb, 0, seq_len=32, mode="segments", batch_size=3, bin_size=8)
    ref = torch.cat([direct_nats(model, tokens[i * 32: i * 32 + 33]) for i in range(8)])
    assert r.tokens == 256 and r.nats == pytest.approx(float(ref.sum()), rel=1e-5)
    targets = tokens[1:257]
    assert r.bytes == int((targets != 0).sum())
    assert r.bpb == pytest.approx(r.nats / math.log(2) / r.bytes)
    assert r.ppl == pytest.approx(math.exp(r.loss))
    assert sum(r.position_tokens) == r.tokens and len(r.position_tokens) == 4  # positions < 32


def test_stream_equals_one_pass_over_each_lane(setup):
    model, tokens, tb = setup
    r = evaluate_lm(model, tokens, tb, 0, seq_len=16, mode="stream", batch_size=2, bin_size=16)
    lane = 128  # (257 - 1) // 2
    ref = sum(float(direct_nats(model, tokens[s: s + lane + 1]).sum()) for s in (0, lane))
    assert r.tokens == 256 and r.nats == pytest.approx(ref, rel=1e-4)
    # positions reach past seq_len: the memory carried across segments
    assert len(r.position_tokens) > 1 and sum(r.position_tokens) == 256


def test_sliding_scores_every_token_once(setup):
    model, tokens, tb = setup
    r = evaluate_lm(model, tokens, tb, 0, seq_len=32, mode="sliding", stride=8, batch_size=4)
    assert r.tokens == 256
    same = evaluate_lm(model, tokens, tb, 0, seq_len=32, mode="sliding", stride=32, batch_size=4)
    seg = evaluate_lm(model, tokens, tb, 0, seq_len=32, mode="segments", batch_size=4)
    assert same.nats == pytest.approx(seg.nats, rel=1e-5)


def test_positions_and_errors(setup, tmp_path):
    model, tokens, tb = setup
    assert document_positions(np.array([5, 6, 0, 7, 0, 0, 8]), 0).tolist() == [0, 1, 2, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="mode"):
        evaluate_lm(model, tokens, tb, 0, 16, mode="window")
    with pytest.raises(ValueError, match="stride"):
        evaluate_lm(model, tokens, tb, 0, 16, mode="sliding", stride=17)
    r = evaluate_lm(model, tokens, tb, 0, seq_len=16, mode="stream", batch_size=1, bin_size=16, max_tokens=64)
    assert r.tokens == 64
    plot_per_position({"stream": r}, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
