"""Shared tiny configurations for the training tests (seconds on CPU)."""

from __future__ import annotations

from titans.training import TrainConfig

TINY_MODEL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "window": 8, "segment_len": 8, "n_persistent": 2,
              "n_retrieve": 2, "memory": {"chunk_size": 4, "expansion": 2.0}}


def tiny_config(out_dir, model: str = "tiny-lmm", **kw) -> TrainConfig:
    base = dict(model=model, model_overrides=dict(TINY_MODEL), seq_len=16, batch_size=4, global_batch=4,
                max_steps=6, warmup_steps=2, lr=3e-3, eval_interval=0, eval_batches=1, log_interval=1,
                max_train_tokens=20_000, max_val_tokens=2_000, sample_tokens=0, progress=False,
                out_dir=str(out_dir), threads=1)
    return TrainConfig.from_dict({**base, **kw})
