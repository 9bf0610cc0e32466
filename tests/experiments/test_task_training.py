"""The shared training harness of the retrieval experiments (``experiments/task_training.py``):
copy-sample builders (every supervised span is exactly the text to recall), the non-finite
gradient guard, checkpoint/resume and the model names."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]


def test_copy_example_supervises_the_repeat(task_training):
    ids, a = task_training.copy_example(random.Random(1), 64)
    n = (len(ids) - 1) // 2
    assert ids[n] == ord("|") and ids[:n] == ids[n + 1:]
    assert a == n + 1  # targets from position a on are ids[a + 1:]: the repeat after its first byte


def test_embedded_copy_example_recalls_the_string_from_its_cue(run_niah, task_training):
    lm = np.frombuffer(b"Plain text without any capitals or digits in it at all. " * 100, dtype=np.uint8)
    for seed in range(20):
        ids, a = task_training.embedded_copy_example(random.Random(seed), lm, 300)
        target = bytes(ids[a + 1:])  # what the loss covers
        cue = bytes(ids[a - 5:a + 1])
        source = cue + target
        assert len(cue) == 6 and 10 <= len(target) <= 34
        body = bytes(ids[:a - 5])
        assert body.count(source) == 1  # the whole string sits once in the text before the cue
        assert len(ids) <= 300


class _NaNOnce(torch.nn.Module):
    """A tiny LM whose logits are NaN on the calls listed in ``bad`` (1-based)."""

    def __init__(self, bad: set[int]):
        super().__init__()
        self.emb = torch.nn.Embedding(256, 256)
        self.bad, self.calls = bad, 0

    def forward(self, ids):
        self.calls += 1
        logits = self.emb(ids)
        if self.calls in self.bad:
            logits = logits * float("nan")
        return SimpleNamespace(logits=logits)


def _train_args(run_niah, *extra: str):
    return run_niah.build_parser().parse_args(
        ["--batch", "4", "--niah-fraction", "0", "--train-len", "32", "--steps", "4", "--warmup", "1",
         "--max-seconds", "60", *extra])


def test_train_skips_batches_with_non_finite_gradients(run_niah, task_training):
    lm = np.frombuffer(b"plain text for the language-model rows " * 40, dtype=np.uint8)
    torch.manual_seed(0)
    model = _NaNOnce(bad={2})
    before = model.emb.weight.detach().clone()
    out = task_training.train(model, _train_args(run_niah), lm, None, torch.device("cpu"))
    assert out["skipped_steps"] == [2] and out["steps"] == 4 and model.calls == 5
    assert torch.isfinite(model.emb.weight).all() and not torch.equal(model.emb.weight, before)

    model = _NaNOnce(bad={2})
    out = task_training.train(model, _train_args(run_niah, "--nonfinite-grads", "apply"), lm, None,
                         torch.device("cpu"))
    assert out["skipped_steps"] == [] and not torch.isfinite(model.emb.weight).all()


def test_train_stops_after_too_many_skipped_batches(run_niah, task_training):
    lm = np.frombuffer(b"plain text for the language-model rows " * 40, dtype=np.uint8)
    model = _NaNOnce(bad=set(range(1, 100)))
    out = task_training.train(model, _train_args(run_niah, "--max-skipped-steps", "2"), lm, None,
                         torch.device("cpu"))
    assert out["steps"] == 0 and out["skipped_steps"] == [1, 1, 1]


def test_train_resumes_from_its_checkpoint(run_niah, tmp_path, task_training):
    """Train 4 steps and checkpoint; resuming loads the weights (no step left: unchanged) and
    continues the step count, the log and the optimizer (Adam's step counter reaches 7, not 3)."""
    lm = np.frombuffer(b"plain text for the language-model rows " * 40, dtype=np.uint8)
    ckpt, cpu = tmp_path / "m.pt", torch.device("cpu")
    torch.manual_seed(0)
    model = _NaNOnce(bad=set())
    out = task_training.train(model, _train_args(run_niah, "--steps", "4"), lm, None, cpu, ckpt)
    assert out["steps"] == 4 and ckpt.exists()
    after_first = model.emb.weight.detach().clone()

    torch.manual_seed(1)
    loaded = _NaNOnce(bad=set())
    resume = ("--resume", "--total-seconds", "60")
    out = task_training.train(loaded, _train_args(run_niah, "--steps", "4", *resume), lm, None, cpu, ckpt)
    assert loaded.calls == 0 and out["steps"] == 4 and torch.equal(loaded.emb.weight, after_first)

    resumed = _NaNOnce(bad=set())
    out = task_training.train(resumed, _train_args(run_niah, "--steps", "7", *resume), lm, None, cpu, ckpt)
    assert resumed.calls == 3 and out["steps"] == 7 and [r["step"] for r in out["log"]] == [1]
    assert not torch.equal(resumed.emb.weight, after_first)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["steps"] == 7 and float(saved["optimizer"]["state"][0]["step"]) == 7.0
    torch.testing.assert_close(saved["model"]["emb.weight"], resumed.emb.weight.detach())


def test_model_config_knows_the_lmm_ablations(run_niah, task_training):
    args = _train_args(run_niah)

    def mem(name):
        return task_training.model_config(name, args).memory_config()

    base = task_training.model_config("lmm", args)
    assert base.n_persistent == 0 and mem("lmm").depth == 2 and mem("lmm").chunk_size == args.chunk
    assert mem("lmm-linear").depth == 1
    assert mem("lmm-noconv").conv_kernel == 0
    assert mem("lmm-nomomentum").momentum is False
    assert mem("lmm-nodecay").weight_decay is False
    assert task_training.model_config("lmm-nopersistent", args) == base
    with pytest.raises(ValueError, match="lmm-linear"):
        task_training.model_config("lmm-bogus", args)


def test_resume_without_total_seconds_is_refused(run_niah, tmp_path, task_training):
    lm = np.frombuffer(b"plain text for the language-model rows " * 40, dtype=np.uint8)
    with pytest.raises(ValueError, match="--total-seconds"):
        task_training.train(_NaNOnce(bad=set()), _train_args(run_niah, "--resume"), lm, None,
                       torch.device("cpu"), tmp_path / "m.pt")


def test_batch_losses_match_masked_means(task_training):
    """The sync-free losses equal the plain boolean-indexed means; an empty term is 0."""

    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, ids):
            return SimpleNamespace(logits=self.logits)

    g = torch.Generator().manual_seed(0)
    B, T = 4, 12
    logits = torch.randn(B, T, 256, generator=g)
    tgt = torch.randint(0, 256, (B, T), generator=g)
    tgt[0, :5] = -100
    is_niah = torch.zeros(B, T, dtype=torch.bool)
    is_niah[0] = True
    is_answer = torch.zeros(B, T, dtype=torch.bool)
    is_answer[0, 9:] = True
    batch = {"ids": tgt.clamp(min=0), "tgt": tgt, "is_niah": is_niah, "is_answer": is_answer,
             "is_copy": torch.zeros(B, T, dtype=torch.bool)}
    out = task_training.batch_losses(Fixed(logits), batch, context_loss=0.25)
    ce = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100, reduction="none").view(B, T)
    valid = tgt != -100
    expect = {"lm": ce[valid & ~is_niah].mean(), "niah": ce[is_answer].mean(),
              "context": ce[valid & is_niah & ~is_answer].mean(), "copy": torch.tensor(0.0)}
    for k, v in expect.items():
        torch.testing.assert_close(out[k], v)
    torch.testing.assert_close(out["loss"], expect["lm"] + expect["niah"] + 0.25 * expect["context"])


def test_cuda_graph_needs_cuda(run_niah, task_training):
    lm = np.frombuffer(b"plain text for the language-model rows " * 40, dtype=np.uint8)
    with pytest.raises(ValueError, match="--cuda-graph needs a CUDA"):
        task_training.train(_NaNOnce(bad=set()), _train_args(run_niah, "--cuda-graph"), lm, None,
                            torch.device("cpu"))


def test_model_config_builds_mag_and_mal_with_the_segment_as_window(run_niah, task_training):
    args = _train_args(run_niah, "--segment", "128")
    for name in ("mag", "mal"):
        cfg = task_training.model_config(name, args)
        assert cfg.variant == name and cfg.window == 128 and cfg.n_persistent == 16


def test_run_niah_refuses_an_unknown_model_before_training(run_niah, monkeypatch, tmp_path):
    monkeypatch.setattr("sys.argv", ["run_niah.py", "--models", "lmm", "bogus", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="bogus"):
        run_niah.main()
    assert not any(tmp_path.iterdir())  # nothing trained or written


def test_model_config_passes_the_mac_retrieval(run_niah, task_training):
    assert task_training.model_config("mac", _train_args(run_niah)).mac_retrieval == "prefix"
    args = _train_args(run_niah, "--mac-retrieval", "token")
    assert task_training.model_config("mac", args).mac_retrieval == "token"
    assert task_training.model_config("mac-token", _train_args(run_niah)).mac_retrieval == "token"
    assert task_training.model_config("mac", _train_args(run_niah)).mac_write == "attention"
    assert task_training.model_config("mac-input", _train_args(run_niah)).mac_write == "input"
    args = _train_args(run_niah, "--mac-write", "input")
    assert task_training.model_config("mac", args).mac_write == "input"


def test_build_model_starts_from_an_exported_model_with_the_same_config(run_niah, task_training, tmp_path):
    """``--init DIR``: the model exported to DIR/NAME, weights equal; a config that differs from
    the flags' is refused, naming the field."""
    cpu, tiny = torch.device("cpu"), ("--d-model", "32", "--n-layers", "1", "--n-heads", "2")
    torch.manual_seed(0)
    exported = task_training.build_model("mac", _train_args(run_niah, *tiny), cpu)
    exported.save_pretrained(tmp_path / "mac")
    fresh = task_training.build_model("mac", _train_args(run_niah, *tiny), cpu)
    loaded = task_training.build_model("mac", _train_args(run_niah, *tiny, "--init", str(tmp_path)), cpu)
    for (name, a), b in zip(exported.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(a, c) for a, c in zip(exported.parameters(), fresh.parameters()))
    with pytest.raises(ValueError, match="n_layers"):
        task_training.build_model("mac", _train_args(run_niah, *tiny[:2], "--init", str(tmp_path)), cpu)


def test_model_config_passes_the_forget_target(run_niah, task_training):
    """``--forget-target init`` reaches every memory variant's config; absent, the library's default."""
    for name in ("lmm", "mac", "mag"):
        default = task_training.model_config(name, _train_args(run_niah)).memory_config()
        assert default.forget_target == "zero"
        args = _train_args(run_niah, "--forget-target", "init")
        assert task_training.model_config(name, args).memory_config().forget_target == "init"


def test_init_changes_lets_named_fields_differ_and_refuses_the_rest(run_niah, task_training, tmp_path):
    """``--init DIR --init-changes memory.forget_target``: the flags' config with the export's
    weights; without the flag the same change is refused naming the dotted field, and a field that
    changes a weight's shape cannot be allowed into a strict load."""
    cpu, tiny = torch.device("cpu"), ("--d-model", "32", "--n-layers", "1", "--n-heads", "2")
    torch.manual_seed(0)
    exported = task_training.build_model("mac", _train_args(run_niah, *tiny), cpu)
    exported.save_pretrained(tmp_path / "mac")
    init = ("--init", str(tmp_path), "--forget-target", "init")
    with pytest.raises(ValueError, match="memory.forget_target"):
        task_training.build_model("mac", _train_args(run_niah, *tiny, *init), cpu)
    args = _train_args(run_niah, *tiny, *init, "--init-changes", "memory.forget_target")
    loaded = task_training.build_model("mac", args, cpu)
    assert loaded.config.memory_config().forget_target == "init"
    for (name, a), b in zip(exported.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    x = torch.randint(0, 256, (1, 40))
    assert not torch.allclose(loaded(x).logits, exported(x).logits)  # the target is live
    args = _train_args(run_niah, *tiny, "--expansion", "2", *init[:2],
                       "--init-changes", "memory.expansion", "memory.hidden_dim", "memory.theta_max")
    with pytest.raises(RuntimeError, match="size mismatch"):
        task_training.build_model("mac", args, cpu)


def test_init_treats_an_unset_memory_field_as_its_default(run_niah, task_training, tmp_path):
    """An export that leaves ``forget_target`` unset equals flags that name its default: no
    change to allow, no rebuild."""
    cpu, tiny = torch.device("cpu"), ("--d-model", "32", "--n-layers", "1", "--n-heads", "2")
    task_training.build_model("mac", _train_args(run_niah, *tiny), cpu).save_pretrained(tmp_path / "mac")
    args = _train_args(run_niah, *tiny, "--init", str(tmp_path), "--forget-target", "zero")
    assert task_training.build_model("mac", args, cpu).config.memory_config().forget_target == "zero"
