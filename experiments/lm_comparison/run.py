"""Transformer++ vs LMM vs MAC vs MAG vs MAL at ~30M parameters and one token budget (Gutenberg).

Prepare the data on any machine (CPU, a few minutes; writes ~36 MB under .data/lm):

    bash experiments/lm_comparison/prepare.sh

then, on one GPU (PYTHONPATH=src if the package is not installed):

    python3 experiments/lm_comparison/run.py --data .data/lm --out results.json --budget-s 70

The script first times a few training steps of the slowest variants, sets one step count for all
five models so that the slowest trains for about ``--budget-s`` seconds (same tokens for every
model), trains them back to back with ``titans.training`` (AdamW, warm-up + cosine, bf16), then
evaluates each on Gutenberg test and WikiText-2 test (segments of the training length) and writes
the JSON after every model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from titans.data import load_token_file, load_tokenizer
from titans.evaluation.lm import evaluate_lm
from titans.models import ABLATIONS
from titans.training import TrainConfig, Trainer

VARIANTS = ("transformer", "lmm", "mac", "mag", "mal")
def resolve(name: str) -> tuple[str, dict]:
    """A model name of this script → (preset variant, model overrides)."""
    if name in VARIANTS:
        return name, {}
    if name in ABLATIONS:
        return "lmm", ABLATIONS[name]
    raise ValueError(f"unknown model {name!r}; choose from {VARIANTS + tuple(ABLATIONS)}")


def make_config(args, name: str, steps: int, out_dir: Path) -> TrainConfig:
    variant, overrides = resolve(name)
    if args.memory and variant != "transformer":
        overrides = {**overrides, "memory": {**args.memory, **overrides.get("memory", {})}}
    return TrainConfig.from_dict(dict(
        model=f"{args.size}-{variant}", tokenizer=str(args.data / "tok"),
        train_data=str(args.data / "train.npy"),
        val_data=str(args.data / "gutenberg_val.npy"), seq_len=args.seq_len, batch_size=args.batch_size,
        global_batch=args.batch_size, max_steps=steps, warmup_steps=max(1, steps // 10), lr=args.lr,
        eval_interval=0, eval_batches=4, log_interval=max(1, steps // 10), sample_tokens=0, progress=False,
        out_dir=str(out_dir / name), seed=args.seed, ckpt_interval=0, keep_checkpoints=1,
        model_overrides=overrides))


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def probe(args, variant: str, out_dir: Path) -> float:
    """Seconds per training step after warm-up (kernel compilation) for one variant."""
    trainer = Trainer(make_config(args, variant, 100, out_dir / "probe"), print_fn=lambda *a: None)
    for _ in range(2):
        trainer.train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(3):
        trainer.train_step()
    sync()
    del trainer
    torch.cuda.empty_cache()
    return (time.perf_counter() - t0) / 3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=Path(".data/lm"))
    p.add_argument("--out", type=Path, default=Path("lm_comparison.json"))
    p.add_argument("--budget-s", type=float, default=70.0, help="training seconds of the slowest model")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--size", default="small", help="model preset size (tiny for a CPU smoke test)")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--eval-tokens", type=int, default=500_000)
    p.add_argument("--steps", type=int, default=None, help="fixed step count (skips the probe)")
    p.add_argument("--memory", type=json.loads, default=None,
                   help='memory config overrides for the Titans variants, e.g. \'{"theta_max": 0.003}\'')
    p.add_argument("--variants", nargs="+", default=list(VARIANTS),
                   help=f"models to train: {', '.join(VARIANTS + tuple(ABLATIONS))}")
    p.add_argument("--probe", nargs="+", default=["mac", "lmm"], help="variants timed to set the steps")
    p.add_argument("--seed", type=int, default=0, help="seed of every model's init and data order")
    args = p.parse_args()
    for name in args.variants + args.probe:
        resolve(name)  # fail on a typo before any GPU work
    work = Path("/tmp/lm_comparison")
    tok = load_tokenizer(args.data / "tok")
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available()
           else "cpu", "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t_all = time.perf_counter()
    step_s = {v: probe(args, v, work) for v in args.probe} if args.steps is None else {}
    steps = args.steps or max(10, min(args.max_steps, int(args.budget_s / max(step_s.values()))))
    tokens = steps * args.batch_size * args.seq_len
    print(f"probe s/step {step_s} → {steps} steps = {tokens / 1e6:.2f}M tokens per model", flush=True)
    evals = {"gutenberg_test": load_token_file(args.data / "gutenberg_test.npy"),
             "wikitext2_test": load_token_file(args.data / "wikitext2_test.npy")}
    flags = " ".join(f"--{k.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list) else
                                                     f"'{json.dumps(v)}'" if isinstance(v, dict) else str(v))
                     for k, v in vars(args).items() if v is not None)
    out = {"env": env, "command": f"python3 experiments/lm_comparison/run.py {flags}",
        "probe_seconds_per_step": step_s, "steps": steps, "tokens_per_model": tokens,
        "tokenizer": {"vocab_size": tok.vocab_size}, "models": {}}
    for variant in args.variants:
        cfg = make_config(args, variant, steps, work)
        rec = {"config": cfg.to_dict()}
        t0 = time.perf_counter()
        try:
            trainer = Trainer(cfg, print_fn=lambda s, v=variant: print(f"[{v}] {s}", flush=True))
            summary = trainer.fit()
            rec.update(parameters=summary["parameters"], train_seconds=summary["train_seconds"],
                       final_train_loss=summary["final_train_loss"], val=summary["val_after"],
                       tokens_per_s=tokens / summary["train_seconds"],
                       model_config=trainer.model_cfg.to_dict())
            model = trainer.model
            for name, data in evals.items():
                r = evaluate_lm(model, data, tok.token_bytes(), tok.eos_id, args.seq_len, mode="segments",
                                batch_size=args.batch_size, max_tokens=args.eval_tokens,
                                device=trainer.info.device, autocast_dtype=trainer.autocast_dtype)
                rec[name] = r.summary()
                print(f"[{variant}] {name}: ppl {r.ppl:.2f} bpb {r.bpb:.4f} ({r.tokens:,} tokens)",
                      flush=True)
            del trainer, model
        except Exception as e:  # a diverged or failing model is recorded, the others still run
            rec["error"] = f"{type(e).__name__}: {e}"
            print(f"[{variant}] FAILED: {rec['error']}", flush=True)
        rec["wall_seconds"] = time.perf_counter() - t0
        out["models"][variant] = rec
        torch.cuda.empty_cache()
        out["total_seconds"] = time.perf_counter() - t_all
        args.out.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print("\nmodel            params  gutenberg ppl  wikitext2 ppl  tok/s")
    for v, r in out["models"].items():
        if "error" in r:
            print(f"{v:<16} {r['error'][:60]}")
            continue
        print(f"{v:<16} {r['parameters'] / 1e6:5.1f}M  {r['gutenberg_test']['ppl']:13.2f}  "
              f"{r['wikitext2_test']['ppl']:13.2f}  {r['tokens_per_s']:,.0f}")
    print(f"total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
