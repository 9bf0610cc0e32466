"""``experiments/babilong/long_context_probe.py``: the streaming probe and its interventions."""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from titans.data.tokenizer import ByteTokenizer
from titans.memory.neural_memory import NeuralMemory
from titans.models import TitansLM, get_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("long_context_probe",
                                                  ROOT / "experiments/babilong/long_context_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_lmm() -> TitansLM:
    torch.manual_seed(0)
    cfg = get_config("tiny-lmm", vocab_size=256, d_model=32, n_layers=2, n_heads=2,
                     n_persistent=0,
                     memory={"chunk_size": 16, "alpha_init": 0.01})
    return TitansLM(cfg).eval()


def args_for(tmp_path, **kw) -> argparse.Namespace:
    text = "The grass is green. The sky is blue. " * 20
    path = tmp_path / "hay.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"text": text}) + "\n")
    base = dict(haystack=str(path), stream=128, piece=32, alpha_scale=[1.0], anchor_decay=False)
    return argparse.Namespace(**{**base, **kw})


def test_stream_reports_every_piece_and_restores_the_gates(probe, tmp_path):
    model, gates = tiny_lmm(), NeuralMemory._gates
    rows = probe.stream(model, ByteTokenizer(), args_for(tmp_path, alpha_scale=[1.0, 0.0]))
    assert NeuralMemory._gates is gates
    assert [(r["alpha_scale"], r["position"]) for r in rows] == [(s, p) for s in (1.0, 0.0)
                                                                for p in (32, 64, 96, 128)]
    assert all(math.isfinite(r["loss"]) and len(r["w_first"]) == 2 for r in rows)


def test_anchor_decay_without_writes_keeps_the_initial_weights(probe, tmp_path, monkeypatch):
    """θ = 0 (nothing written): forgetting towards zero shrinks the weights by Π(1 − α); forgetting
    towards the initial weights W0 must leave exactly W0."""
    gates = NeuralMemory._gates

    def no_writes(self, x):
        theta, eta, alpha = gates(self, x)
        return torch.zeros_like(theta), eta, alpha

    monkeypatch.setattr(NeuralMemory, "_gates", no_writes)
    model = tiny_lmm()
    w0 = [torch.linalg.norm(m.initial_state().weights[0].float()).item()
          for m in model.modules() if isinstance(m, NeuralMemory)]
    plain = probe.stream(model, ByteTokenizer(), args_for(tmp_path))
    anchored = probe.stream(model, ByteTokenizer(), args_for(tmp_path, anchor_decay=True))
    assert all(a < b * 0.99 for a, b in zip(plain[-1]["w_first"], w0))
    for row in anchored:
        assert row["w_first"] == pytest.approx(w0, rel=1e-5)
    with pytest.raises(ValueError, match="multiple of the chunk"):
        probe.stream(model, ByteTokenizer(), args_for(tmp_path, anchor_decay=True, piece=24))
