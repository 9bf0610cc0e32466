"""The training loop: AdamW + warm-up/cosine, clipping, accumulation, validation, checkpoints.

``train(cfg)`` runs one job from start (or from ``resume``) to ``cfg.final_step`` and returns a
summary dict. On CPU, a run interrupted at step k (``stop_after=k``) and resumed continues
bit-identically to an uninterrupted one: the data order is a pure function of (seed, position),
the learning rate a pure function of the step, and weights/optimizer/RNG are restored exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from titans.data import PackedSequences, ResumableSampler, load_tokenizer, load_tokens, split_tokens
from titans.data import corpus as embedded
from titans.evaluation.lm import LMEvalResult, evaluate_lm

from . import distributed as D
from .checkpoint import load_training_state, load_weights, resolve_checkpoint, save_checkpoint
from .config import TrainConfig, lr_at
from .cuda_graph import GraphedTrainStep
from .logger import RunLogger

# Fields that must match a checkpoint to resume from it; fields that may change freely; any other
# change (data, schedule, global batch, seed, ...) is allowed with a warning.
RESUME_STRICT = ("model", "model_overrides", "tokenizer", "seq_len")
RESUME_FREE = ("stop_after", "progress", "out_dir", "batch_size", "parallel", "eval_interval", "eval_batches",
               "log_interval", "ckpt_interval", "keep_checkpoints", "threads", "device", "sample_tokens",
               "sample_prompt", "compile", "cuda_graph")


def build_model_config(cfg: TrainConfig, vocab_size: int):
    from titans.models import get_config

    try:
        return get_config(cfg.model, vocab_size=vocab_size, **cfg.model_overrides)
    except (TypeError, KeyError) as e:  # unknown override / preset: report as a config error
        raise ValueError(f"bad model config {cfg.model!r} with overrides {cfg.model_overrides}: {e}") from e


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (embeddings included), none on vectors (norms, biases, gates)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class Data:
    train: PackedSequences
    val_tokens: np.ndarray
    token_bytes: np.ndarray
    eos_id: int


def load_data(cfg: TrainConfig, tokenizer) -> Data:
    train_src = cfg.train_data or embedded.TRAIN
    train = load_tokens(train_src, tokenizer, cfg.text_field, cfg.max_train_tokens)
    if cfg.val_data is not None:
        val = load_tokens(cfg.val_data, tokenizer, cfg.text_field, cfg.max_val_tokens)
    elif cfg.train_data is None:
        val = load_tokens(embedded.VALIDATION, tokenizer, cfg.text_field, cfg.max_val_tokens)
    else:
        train, val = split_tokens(train, cfg.val_fraction)
        if cfg.max_val_tokens is not None:
            val = val[: cfg.max_val_tokens]
    seqs = PackedSequences(train, cfg.seq_len)
    if len(seqs) < cfg.global_batch:
        raise ValueError(f"training data has {len(train)} tokens = {len(seqs)} sequences of seq_len "
                         f"{cfg.seq_len}, fewer than one global batch ({cfg.global_batch})")
    if len(val) < cfg.seq_len + 1:
        raise ValueError(f"validation data has {len(val)} tokens, fewer than seq_len + 1 = {cfg.seq_len + 1}")
    return Data(seqs, val, tokenizer.token_bytes(), tokenizer.eos_id)


class Trainer:
    """Set up everything (validating first), then :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None, print_fn=print):
        cfg.validate()
        self.cfg = cfg
        self.print = print_fn
        # ---- every check before any work
        self.tokenizer = load_tokenizer(cfg.tokenizer)
        self.model_cfg = build_model_config(cfg, self.tokenizer.vocab_size)
        self.ckpt = resolve_checkpoint(resume) if resume is not None else None
        if self.ckpt is not None:
            self._check_resume_config(json.loads((self.ckpt / "trainer_state.json").read_text())["config"])
        self.info = D.setup(cfg.device)
        self.accum = cfg.grad_accum(self.info.world_size)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.info.device.type == "cuda")
        if use_bf16 and self.info.device.type != "cuda":
            raise ValueError("precision='bf16' needs a CUDA device (CPU training runs in fp32)")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        # ---- data and model
        self.data = load_data(cfg, self.tokenizer)
        self.sampler = ResumableSampler(len(self.data.train), seed=cfg.seed)
        from titans.models import TitansLM

        torch.manual_seed(cfg.seed)
        model = TitansLM(self.model_cfg)
        self.num_params = sum(p.numel() for p in model.parameters())
        if self.ckpt is not None:
            load_weights(model, self.ckpt)
        model.to(self.info.device)
        self.model = D.wrap(model, self.info, cfg.parallel)
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                           betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                           fused=self.info.device.type == "cuda" or None)
        self.step = 0
        self.tokens_seen = 0
        self.skipped_steps = 0  # updates dropped for a non-finite gradient (nonfinite_grads="skip")
        self.consecutive_skips = 0
        if self.ckpt is not None:
            state = load_training_state(self.ckpt, self.model, self.optimizer)
            self.step, self.tokens_seen = int(state["step"]), int(state["tokens"])
            self.sampler.load_state_dict(state["sampler"])
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.graphed = self._graphed_step() if cfg.cuda_graph else None
        self.out_dir = Path(cfg.out_dir)
        self.logger = RunLogger(self.out_dir, enabled=self.info.is_main)

    def _check_resume_config(self, saved: dict[str, Any]) -> None:
        for key in RESUME_STRICT:
            if saved.get(key) != getattr(self.cfg, key):
                raise ValueError(f"cannot resume: {key}={getattr(self.cfg, key)!r} but the checkpoint was "
                                 f"trained with {saved.get(key)!r}")
        changed = [k for k, v in saved.items() if k not in RESUME_FREE
                   and getattr(self.cfg, k, v) != v]
        if changed:
            warnings.warn(f"resuming with changed config fields {changed}: the run will not match an "
                          "uninterrupted one", stacklevel=2)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> LMEvalResult:
        cfg = self.cfg
        windows = cfg.eval_batches * cfg.batch_size * self.info.world_size
        model = self.model if D.is_fsdp(self.model) else D.unwrap(self.model)
        return evaluate_lm(model, self.data.val_tokens, self.data.token_bytes, self.data.eos_id, cfg.seq_len,
                           mode="segments", batch_size=cfg.batch_size, max_tokens=windows * cfg.seq_len,
                           device=self.info.device, autocast_dtype=self.autocast_dtype,
                           rank=self.info.rank, world_size=self.info.world_size)

    def _log_eval(self, label: str, r: LMEvalResult, elapsed: float) -> dict:
        if self.info.is_main:
            self.print(f"validation {label}: loss {r.loss:.4f} | ppl {r.ppl:.2f} | bpb {r.bpb:.4f} "
                       f"({r.tokens:,} tokens)")
        self.logger.log(step=self.step, tokens=self.tokens_seen, split="val", loss=r.loss, ppl=r.ppl,
                        bpb=r.bpb, elapsed_s=round(elapsed, 3))
        return r.summary()

    # ------------------------------------------------------------------ training
    def _graphed_step(self) -> GraphedTrainStep:
        """Forward + loss + backward of one micro-batch as a CUDA graph (one process only)."""
        if self.info.device.type != "cuda":
            raise ValueError(f"cuda_graph=true needs a CUDA device, got {self.info.device}")
        if self.info.enabled:
            raise ValueError(f"cuda_graph=true supports one process only (world_size "
                             f"{self.info.world_size}); DDP/FSDP communication is not captured")
        dtype, accum = self.autocast_dtype, self.accum

        def loss_fn(model, batch):
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None,
                                cache_enabled=False):  # the weight-cast cache does not survive capture
                loss = model(batch["x"], targets=batch["y"]).loss
            return {"loss": loss / accum}

        return GraphedTrainStep(self.forward, loss_fn)

    def _graphed_micro_batches(self, batches) -> Tensor:
        """Replay the graph once per micro-batch; with accumulation the gradients (which each
        replay overwrites) are summed into copies of the first replay's. Returns the mean loss."""
        total, sums = torch.zeros((), device=self.info.device), None
        params = [p for p in self.model.parameters() if p.requires_grad]
        for x, y in batches:
            out = self.graphed({"x": x, "y": y})
            total += out["loss"].detach()
            grads = [p.grad for p in params]
            if self.accum == 1:
                return total
            if sums is None:
                sums = [g.clone() for g in grads]
            else:
                torch._foreach_add_(sums, grads)
        for p, g in zip(params, sums):
            p.grad = g
        return total

    def _no_sync(self, last: bool):
        if last or not self.info.enabled:
            return contextlib.nullcontext()
        if D.is_fsdp(self.model):
            self.model.set_requires_gradient_sync(False)
            return contextlib.nullcontext()
        return self.model.no_sync()

    def train_step(self) -> tuple[float, float]:
        """One optimizer step over a global batch; returns (mean loss over it, grad norm)."""
        cfg, info = self.cfg, self.info
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        mine = self.sampler.next_global_batch(cfg.global_batch, info.rank, info.world_size)
        total = torch.zeros((), device=info.device)

        def micro_batch(m: int) -> tuple[Tensor, Tensor]:
            x, y = self.data.train.batch(mine[m * cfg.batch_size:(m + 1) * cfg.batch_size])
            return x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)

        if self.graphed is not None:
            total = self._graphed_micro_batches(micro_batch(m) for m in range(self.accum))
        else:
            for m in range(self.accum):
                x, y = micro_batch(m)
                last = m == self.accum - 1
                if D.is_fsdp(self.model) and last and self.accum > 1:
                    self.model.set_requires_gradient_sync(True)
                with self._no_sync(last):
                    with (torch.autocast("cuda", dtype=self.autocast_dtype) if self.autocast_dtype
                          else contextlib.nullcontext()):
                        loss = self.forward(x, targets=y).loss
                    (loss / self.accum).backward()
                total += loss.detach() / self.accum
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        loss_value = float(D.all_reduce_mean(total))
        if torch.isfinite(grad_norm):  # the same on every rank: gradients are reduced first
            self.optimizer.step()
            self.consecutive_skips = 0
        else:
            self._non_finite_gradient(float(grad_norm), loss_value, lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += cfg.global_batch * cfg.seq_len
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"training loss became {loss_value} at step {self.step}; lower lr "
                                     f"(now {lr:.3g}) or grad_clip")
        return loss_value, float(grad_norm)

    def _non_finite_gradient(self, norm: float, loss: float, lr: float) -> None:
        """Handle a step whose gradient norm is ``norm`` (inf/NaN) per ``cfg.nonfinite_grads``."""
        cfg, step = self.cfg, self.step + 1
        if cfg.nonfinite_grads == "raise":
            raise FloatingPointError(
                f"gradient norm {norm} at step {step} (loss {loss:.4g}): the weights were not updated; "
                f"lower lr (now {lr:.3g}), or set nonfinite_grads='skip' to drop such steps")
        self.skipped_steps += 1
        self.consecutive_skips += 1
        if self.info.is_main:
            from tqdm.auto import tqdm

            tqdm.write(f"step {step}: gradient norm {norm} (loss {loss:.4g}); update skipped "
                       f"({self.consecutive_skips} in a row, {self.skipped_steps} in this run)")
        if self.consecutive_skips >= cfg.max_skipped_steps:
            raise FloatingPointError(f"{self.consecutive_skips} consecutive steps with non-finite gradients "
                                     f"(max_skipped_steps={cfg.max_skipped_steps}) at step {step}")

    def save(self) -> Path:
        state = {"step": self.step, "tokens": self.tokens_seen, "sampler": self.sampler.state_dict(),
                 "config": self.cfg.to_dict(), "world_size": self.info.world_size,
                 "num_parameters": self.num_params}
        return save_checkpoint(self.out_dir, self.step, self.model, self.optimizer, self.tokenizer, state,
                               self.info.is_main, self.cfg.keep_checkpoints)

    def sample(self) -> str:
        cfg = self.cfg
        ids = torch.tensor([self.tokenizer.encode(cfg.sample_prompt)], device=self.info.device)
        model = self.model if D.is_fsdp(self.model) else D.unwrap(self.model)
        was = model.training
        model.eval()
        g = torch.Generator(device=self.info.device).manual_seed(cfg.seed)
        with torch.no_grad():
            out = model.generate(ids, cfg.sample_tokens, temperature=0.8, top_k=50, generator=g)
        model.train(was)
        return self.tokenizer.decode(out[0].tolist())

    def fit(self) -> dict:
        cfg, info = self.cfg, self.info
        from tqdm.auto import tqdm

        summary: dict[str, Any] = {"model": cfg.model, "parameters": self.num_params,
                                   "world_size": info.world_size, "grad_accum": self.accum,
                                   "tokens_per_step": cfg.global_batch * cfg.seq_len}
        if info.is_main:
            self.print(f"model {cfg.model}: {self.num_params / 1e6:.2f}M parameters | device {info.device}"
                       f" × {info.world_size} | {cfg.global_batch} × {cfg.seq_len} tokens a step "
                       f"(accumulation {self.accum}) | {len(self.data.train):,} training sequences")
        if self.step == 0:
            summary["val_before"] = self._log_eval("before training", self.evaluate(), 0.0)
        t0 = time.perf_counter()
        start = self.step
        bar = tqdm(total=cfg.final_step, initial=self.step, disable=not (info.is_main and cfg.progress),
                   desc="train", unit="step", dynamic_ncols=True)
        window_t, window_tokens = time.perf_counter(), 0
        loss = float("nan")
        while self.step < cfg.final_step:
            loss, gnorm = self.train_step()
            window_tokens += cfg.global_batch * cfg.seq_len
            bar.update(1)
            if self.step % cfg.log_interval == 0 or self.step == cfg.final_step:
                now = time.perf_counter()
                tps = window_tokens / max(now - window_t, 1e-9)
                window_t, window_tokens = now, 0
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr_at(self.step - 1, cfg):.2e}",
                                tok_s=f"{tps:,.0f}")
                self.logger.log(step=self.step, tokens=self.tokens_seen, split="train", loss=loss,
                                ppl=math.exp(min(loss, 50)), lr=lr_at(self.step - 1, cfg), grad_norm=gnorm,
                                tokens_per_s=round(tps, 1), elapsed_s=round(now - t0, 3))
            if cfg.eval_interval and self.step % cfg.eval_interval == 0 and self.step < cfg.final_step:
                bar.clear()
                self._log_eval(f"step {self.step}", self.evaluate(), time.perf_counter() - t0)
            if cfg.ckpt_interval and self.step % cfg.ckpt_interval == 0 and self.step < cfg.final_step:
                self.save()
        bar.close()
        train_time = time.perf_counter() - t0
        summary["val_after"] = self._log_eval(f"after {self.step} steps", self.evaluate(), train_time)
        ckpt = self.save()
        summary.update(steps=self.step, steps_this_run=self.step - start, tokens=self.tokens_seen,
                       final_train_loss=loss, train_seconds=round(train_time, 2), checkpoint=str(ckpt))
        if cfg.sample_tokens:
            text = self.sample()
            summary["sample"] = text
            if info.is_main:
                self.print(f"sample ({cfg.sample_tokens} tokens, temperature 0.8, top-k 50):\n{text}")
        if info.is_main:
            self.print(f"checkpoint: {ckpt}")
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        self.logger.close()
        return summary


def train(cfg: TrainConfig, resume: str | Path | None = None, print_fn=print) -> dict:
    """Run one training job (see :class:`Trainer`)."""
    trainer = Trainer(cfg, resume=resume, print_fn=print_fn)
    try:
        return trainer.fit()
    finally:
        if trainer.info.enabled:
            D.teardown()
