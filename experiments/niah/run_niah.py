"""S-NIAH fine-tuning setting at our scale: train small MAC / LMM / Transformer++ (and a
sliding-window Transformer) from scratch on a mix of LM text and S-NIAH samples of at most
``--train-len`` tokens, then test every S-NIAH variant at longer lengths. The models, batches
and training loop are ``experiments/task_training.py`` (shared with BABILong).

Byte-level tokens (vocab 256). A test sample is scored by teacher-forced greedy exact match:
the prompt plus the answer go through the model in one pass and the sample counts as solved
when the argmax at every answer position is the answer token — exactly when greedy decoding
would emit the answer right after the answer prefix. Right padding never changes the earlier
positions of a causal model, so samples of one length are batched.

    PYTHONPATH=src python3 experiments/niah/run_niah.py --out experiments/niah/results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from task_training import (  # noqa: E402
    PAD,
    TOK,
    add_training_options,
    build_model,
    lm_tokens,
    model_config,
    train,
)

from titans.evaluation.niah import (  # noqa: E402
    _ADJECTIVES as _ADJ,
)
from titans.evaluation.niah import (  # noqa: E402
    _NOUNS as _NOUN,
)
from titans.evaluation.niah import (  # noqa: E402
    NEEDLE,
    PREFIX,
    QUESTION,
    VARIANTS,
    Haystack,
    NIAHGenerator,
    depth_grid,
    fill_haystack,
    teacher_forced_scores,
)


def niah_example(gen: NIAHGenerator, rng: random.Random, length: int, index: int, variants):
    """(ids, answer span start) of one training sample: prompt + " value." (loss on the answer)."""
    s = gen.sample(rng.choice(variants), length, rng.random(), index)
    ans = TOK.encode(" " + s.answer + ".")
    return s.input_ids + ans, len(s.input_ids)


def multi_needle_example(gen: NIAHGenerator, rng: random.Random, length: int, needles: int,
                         variants) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids, answer spans) of a multi-key training sample in the S-NIAH format: ``needles``
    needle sentences with distinct keys at random depths of one haystack, then the S-NIAH
    question and answer for every key in random order (the loss is on every answer). It
    supervises ``needles`` retrievals per sample instead of one; test samples stay single-needle."""
    spec = VARIANTS[rng.choice(variants)]
    keys = rng.sample([f"{a}-{n}" for a in _ADJ for n in _NOUN], needles)
    values = [str(rng.randrange(1_000_000, 10_000_000)) if spec["value"] == "number"
              else str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in keys]
    fmt = [{"type": spec["type"], "type1": spec["type1"], "key": k, "value": v} for k, v in zip(keys, values)]
    prefix = PREFIX.format(**fmt[0])
    needle_text = [NEEDLE.format(**f) for f in fmt]
    qa = [(QUESTION.format(**f), " " + f["value"] + ".") for f in fmt]
    fixed = len(TOK.encode(prefix + " ".join(needle_text) + "".join(q + a for q, a in qa)))
    hay = Haystack(spec["haystack"], gen.haystack_path).sentences(rng)
    sents, _ = fill_haystack(hay, gen.count, max(0, length - fixed - needles), forbidden=("special magic",))
    for text in needle_text:
        sents.insert(rng.randint(0, len(sents)), text)
    ids = TOK.encode(prefix + " ".join(sents))
    spans = []
    for i in rng.sample(range(needles), needles):
        q, a = qa[i]
        ids = ids + TOK.encode(q)
        spans.append((len(ids), len(ids) + len(TOK.encode(a))))
        ids = ids + TOK.encode(a)
    return ids, spans


def niah_examples(gen: NIAHGenerator, args: argparse.Namespace) -> Callable:
    """``make(rng, index) -> (ids, answer start or spans)``: S-NIAH training samples of random
    variant (from ``--train-variants``, default ``--variants``; a repeated name is drawn more
    often), depth and length in [min-train-len, train-len] (multi-key ones with ``--needles``)."""
    variants = args.train_variants or args.variants

    def make(rng: random.Random, index: int):
        length = rng.randint(min(args.train_len, args.min_train_len), args.train_len)
        if args.needles > 1:
            return multi_needle_example(gen, rng, length, args.needles, variants)
        return niah_example(gen, rng, length, index, variants)
    return make


def test(model, args, gen: NIAHGenerator, device, deadline: float = math.inf) -> list[dict]:
    """Every variant at every test length (shortest first); lengths past ``deadline``
    (``time.time()``) are skipped."""
    model.eval()
    records = []

    def logits_fn(ids):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model(ids).logits

    for length in args.test_lengths:
        for variant in args.variants:
            if time.time() > deadline:
                print(f"  {variant:8s} {length:>6d}: skipped (deadline)", flush=True)
                continue
            samples = list(gen.sweep(variant, [length], depth_grid(args.depths), args.samples))
            scores = teacher_forced_scores(logits_fn, samples, TOK.encode, PAD, args.eval_batch, device)
            records += [{"variant": variant, "length": length, "depth": s.depth, "index": s.index,
                         "score": sc["exact"], "token_accuracy": sc["token_accuracy"]}
                        for s, sc in zip(samples, scores)]
            exact, tokens = (np.mean([sc[k] for sc in scores]) for k in ("exact", "token_accuracy"))
            print(f"  {variant:8s} {length:>6d}: {100 * exact:5.1f}%  (tokens {100 * tokens:5.1f}%)",
                  flush=True)
    return records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["transformer", "swa", "mac", "lmm"])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="S-NIAH variants tested (and trained, unless --train-variants)")
    p.add_argument("--train-variants", nargs="+", choices=list(VARIANTS), default=None,
                   help="variants of the training needles, drawn uniformly from this list (repeat a "
                        "name to weight it, e.g. passkey number uuid uuid); default --variants")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--expansion", type=float, default=4.0, help="memory MLP hidden = expansion × head_dim")
    p.add_argument("--theta-max", type=float, default=None, help="memory inner learning-rate bound "
                   "(default: the library's)")
    p.add_argument("--segment", type=int, default=256, help="MAC segment = sliding window of swa")
    p.add_argument("--train-len", type=int, default=1024)
    p.add_argument("--min-train-len", type=int, default=512, help="S-NIAH training lengths are "
                   "drawn uniformly from [min-train-len, train-len]")
    p.add_argument("--context-loss", type=float, default=0.0,
                   help="weight of the LM loss on the S-NIAH prompt tokens (0 = answer-only loss)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--niah-fraction", type=float, default=0.75)
    p.add_argument("--needles", type=int, default=1, help="needles (distinct keys) per training "
                   "sample, every one asked after the haystack; test samples have one")
    add_training_options(p)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--max-seconds", type=float, default=50.0, help="per-model training time cap")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--test-lengths", nargs="+", type=int, default=[2048, 4096, 8192, 16384])
    p.add_argument("--depths", type=int, default=5)
    p.add_argument("--samples", type=int, default=2, help="test samples per (variant, length, depth)")
    p.add_argument("--eval-batch", type=int, default=10)
    p.add_argument("--haystack", default="../shared/data/gutenberg/test.jsonl.gz")
    p.add_argument("--lm-data", default="../shared/data/gutenberg/train-00.jsonl.gz")
    p.add_argument("--lm-bytes", type=int, default=20_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deadline", type=float, default=math.inf,
                   help="seconds after start past which no model starts training and no test length "
                        "starts (the results written so far are kept)")
    p.add_argument("--out", default="experiments/niah/results")
    return p


def main() -> None:
    args = build_parser().parse_args()
    deadline = time.time() + args.deadline
    for name in args.models:  # a bad name fails now, not after the models before it trained
        model_config(name, args)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    lm = lm_tokens(args.lm_data, args.lm_bytes)
    train_gen = NIAHGenerator(TOK.encode, seed=1000 + args.seed, haystack_path=args.haystack)
    test_gen = NIAHGenerator(TOK.encode, seed=1234, haystack_path=args.haystack)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"args": vars(args), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "memory_backend_env": os.environ.get("TITANS_NEURAL_MEMORY_BACKEND", "auto"),
               "models": {}}
    for name in args.models:
        if time.time() > deadline:
            print(f"{name}: skipped (deadline)", flush=True)
            continue
        torch.manual_seed(args.seed)
        model = build_model(name, args, device)
        print(f"{name}: {model.num_parameters() / 1e6:.2f}M parameters", flush=True)
        ckpt = None if args.checkpoint is None else Path(args.checkpoint) / f"{name}.pt"
        tr = train(model, args, lm, niah_examples(train_gen, args), device, ckpt)
        if args.export:
            model.save_pretrained(Path(args.export) / name)  # JSON config + safetensors
        t0 = time.time()
        records = [] if args.no_test else test(model, args, test_gen, device, deadline)
        acc, tokens = {}, {}
        for r in records:
            acc.setdefault(f"{r['variant']}@{r['length']}", []).append(r["score"])
            tokens.setdefault(f"{r['variant']}@{r['length']}", []).append(r["token_accuracy"])
        summary["models"][name] = {"config": model.config.to_dict(), "init": args.init,
                                   "params": model.num_parameters(), **tr,
                                   "test_seconds": time.time() - t0,
                                   "accuracy": {k: 100 * float(np.mean(v)) for k, v in acc.items()},
                                   "token_accuracy": {k: 100 * float(np.mean(v)) for k, v in tokens.items()},
                                   "records": records}
        (out / "niah_results.json").write_text(json.dumps(summary, indent=1) + "\n")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
