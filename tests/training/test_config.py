"""Config presets, files and validation: every bad value fails before any work starts."""

from __future__ import annotations

import json
import math

import pytest

from titans.training import SIZE_DEFAULTS, TrainConfig, lr_at


def test_presets_and_file(tmp_path):
    cfg = TrainConfig.load("small-mag", max_steps=7, warmup_steps=1)
    assert cfg.model == "small-mag" and cfg.max_steps == 7
    assert cfg.seq_len == SIZE_DEFAULTS["small"]["seq_len"]
    assert TrainConfig.load("340m-mac").seq_len == 4096 and TrainConfig.load("340m-mac").lr == 4e-4
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": "tiny-mal", "lr": 1e-3, "model_overrides": {"d_model": 32}}))
    cfg = TrainConfig.load(str(path), seed=5)
    assert (cfg.model, cfg.lr, cfg.seed, cfg.model_overrides) == ("tiny-mal", 1e-3, 5, {"d_model": 32})
    assert cfg.seq_len == SIZE_DEFAULTS["tiny"]["seq_len"]


@pytest.mark.parametrize("field,value", [
    ("seq_len", 0), ("seq_len", 2.5), ("batch_size", -1), ("global_batch", 6), ("max_steps", 0),
    ("lr", 0.0), ("lr", float("nan")), ("min_lr_ratio", 1.5), ("warmup_steps", 300), ("weight_decay", -1.0),
    ("beta1", 1.0), ("beta2", -0.1), ("eps", 0.0), ("grad_clip", 0.0), ("eval_interval", -1),
    ("eval_batches", 0), ("log_interval", 0), ("ckpt_interval", -5), ("keep_checkpoints", 0), ("seed", -1),
    ("device", "tpu"), ("precision", "fp16"), ("parallel", "zero3"), ("compile", "yes"), ("progress", 1),
    ("nonfinite_grads", "ignore"), ("max_skipped_steps", 0),
    ("val_fraction", 0.0), ("val_fraction", 0.9), ("train_data", "/no/such/path"), ("val_data", 3),
    ("tokenizer", "/no/tokenizer.json"), ("stop_after", 500), ("threads", 0), ("max_train_tokens", 1),
    ("model", ""), ("model_overrides", [1]), ("sample_tokens", -1),
])
def test_bad_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig.from_preset("tiny-mac", **{field: value})


def test_unknown_fields_and_presets(tmp_path):
    with pytest.raises(ValueError, match="unknown training config field"):
        TrainConfig.from_preset("tiny-mac", learning_rate=1.0)
    with pytest.raises(ValueError, match="size in"):
        TrainConfig.load("huge-mac")
    with pytest.raises(ValueError, match="does not exist"):
        TrainConfig.load(str(tmp_path / "missing.json"))


def test_bad_model_config_fails_before_data(tmp_path):
    from titans.training import Trainer

    cfg = TrainConfig.from_preset("tiny-mac", model_overrides={"d_model": 30}, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="n_heads"):
        Trainer(cfg)
    cfg = TrainConfig.from_preset("tiny-zzz", out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="preset"):
        Trainer(cfg)
    assert not (tmp_path / "log.csv").exists()


def test_grad_accum_and_lr_schedule():
    cfg = TrainConfig.from_preset("tiny-mac", batch_size=4, global_batch=16, max_steps=100, warmup_steps=10,
                                  lr=1e-3, min_lr_ratio=0.1)
    assert cfg.grad_accum(1) == 4 and cfg.grad_accum(2) == 2 and cfg.grad_accum(4) == 1
    with pytest.raises(ValueError, match="world_size"):
        cfg.grad_accum(8)
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    mid = 10 + 45
    assert lr_at(mid, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, cfg) == pytest.approx(1e-4) and lr_at(1000, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
