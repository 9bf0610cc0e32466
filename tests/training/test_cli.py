"""The commands: titans tokenizer train/encode, train (+ --resume), generate, eval lm."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_helpers import TINY_MODEL

from titans.cli.main import main


def test_tokenizer_commands(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("the cat sat on the mat with the hat. " * 50)
    assert main(["tokenizer", "train", "--input", str(tmp_path / "t.txt"), "--output", str(tmp_path / "tok"),
                 "--vocab-size", "300", "--quiet"]) == 0
    assert (tmp_path / "tok" / "tokenizer.json").exists()
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "tok"),
                 "--input", str(tmp_path / "t.txt"), "--output", str(tmp_path / "t.npy")]) == 0
    arr = np.load(tmp_path / "t.npy")
    assert arr.dtype == np.uint16 and 0 < len(arr) < 1900
    assert "tokens" in capsys.readouterr().out


def test_train_generate_eval_resume(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--seq-len", "16", "--batch-size", "4", "--global-batch", "4", "--warmup-steps", "1",
              "--eval-batches", "1", "--max-train-tokens", "20000", "--max-val-tokens", "3000",
              "--threads", "1",
              "--out-dir", str(run), "--no-progress", "--sample-tokens", "10"]
    overrides = [f"--model-override={k}={json.dumps(v)}" for k, v in TINY_MODEL.items()]
    args = ["train", "--config", "tiny-lmm", "--max-steps", "4", "--stop-after", "2", *common, *overrides]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "validation before training" in out and "validation perplexity:" in out and "sample" in out
    assert main(["train", "--resume", str(run), "--stop-after", "none"]) == 0
    out = capsys.readouterr().out
    assert "after 4 steps" in out and "before training" not in out
    assert main(["generate", str(run), "--prompt", "The", "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out.startswith("The")
    assert main(["eval", "lm", str(run), "--mode", "segments", "stream", "--max-tokens", "512",
                 "--json", str(tmp_path / "e.json"), "--plot", str(tmp_path / "e.png"), "--quiet"]) == 0
    res = json.loads((tmp_path / "e.json").read_text())["results"]
    assert set(res) == {"segments", "stream"} and res["stream"]["tokens"] == 512
    assert (tmp_path / "e.png").exists()


def test_train_bad_values_exit_cleanly(tmp_path, capsys):
    assert main(["train", "--config", "tiny-mac", "--lr", "-1", "--out-dir", str(tmp_path)]) == 2
    assert "lr must be" in capsys.readouterr().err
    assert main(["train", "--model-override", "oops", "--out-dir", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["train", "--seq-len", "abc"])
    assert not (tmp_path / "log.csv").exists()
