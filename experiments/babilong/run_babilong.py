"""BABILong-style bAbI qa1–qa5 in the fine-tuning setting at our scale: train small models from
scratch on a mix of LM text and bAbI stories hidden in Gutenberg text of at most ``--train-len``
tokens, then test every task at longer lengths (the paper's Fig. 6b at our scale).

Same models, optimiser, schedule, batch mix and time caps as ``experiments/niah/run_niah.py``
(``experiments/task_training.py``)
(byte tokens). Training samples: task uniform over ``--tasks``, length 0 (facts only) with
probability ``--zero-fraction``, else uniform in [story tokens, ``--train-len``]; the loss is on
the answer " word." (plus ``--context-loss`` × the LM loss on the prompt). Test: teacher-forced
greedy exact match of the answer word (the argmax at every answer position is the answer token —
greedy decoding would emit the answer first), on stories of another seed.

    PYTHONPATH=src python3 experiments/babilong/run_babilong.py --out experiments/babilong/results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
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

from titans.evaluation.babilong import TASKS, BabilongGenerator, generate_story  # noqa: E402
from titans.evaluation.niah import teacher_forced_exact_match  # noqa: E402


def babilong_examples(generator_at: Callable[[int], BabilongGenerator], args: argparse.Namespace):
    """``make(rng, index) -> (ids, answer start)``: a training story hidden in background text,
    from ``generator_at(step)`` (the ``--facts`` stage of the step the sample is drawn for)."""
    per_batch = max(1, int(round(args.batch * args.niah_fraction)))  # samples numbered step by step

    def make(rng: random.Random, index: int):
        gen = generator_at(index // per_batch)
        task = rng.choice(args.tasks)
        length = 0 if rng.random() < args.zero_fraction else rng.randint(1, args.train_len)
        try:
            s = gen.sample(task, length, index)
        except ValueError:  # the story alone is longer than the drawn length
            s = gen.sample(task, 0, index)
        ans = TOK.encode(" " + s.answer + ".")
        return s.input_ids + ans, len(s.input_ids)
    return make


def parse_facts(items: list[str]) -> dict[str, list[tuple[int, int]]]:
    """``--facts`` items ``TASK=N`` or ``TASK=N@STEP`` -> ``{task: [(step, n), ...]}`` sorted by
    step: N facts per story from training step STEP on (default 0). Checked now: a story of that
    size must exist, and a task's stages need distinct steps."""
    facts: dict[str, list[tuple[int, int]]] = {}
    for item in items:
        task, _, rest = item.partition("=")
        n, _, step = rest.partition("@")
        if task not in TASKS or not n.isdigit() or not (step or "0").isdigit():
            raise ValueError(f"--facts takes TASK=N or TASK=N@STEP with TASK in {TASKS} and N, STEP "
                             f"ints, got {item!r}")
        stages = facts.setdefault(task, [])
        if any(s == int(step or 0) for s, _ in stages):
            raise ValueError(f"--facts gives {task} twice at step {int(step or 0)}")
        generate_story(task, random.Random(0), int(n))  # raises on a count the task cannot have
        stages.append((int(step or 0), int(n)))
        stages.sort()
    return facts


def facts_at(schedule: dict[str, list[tuple[int, int]]], step: float) -> dict[str, int]:
    """Facts per story at training ``step`` (``math.inf``: the last stage, which the test uses);
    tasks before their first stage keep their default."""
    out = {}
    for task, stages in schedule.items():
        current = [n for s, n in stages if s <= step]
        if current:
            out[task] = current[-1]
    return out


@torch.no_grad()
def test(model, args, gen: BabilongGenerator, device, deadline: float = math.inf) -> list[dict]:
    """Every task at every test length (shortest first); lengths past ``deadline`` are skipped."""
    model.eval()
    records = []

    def logits_fn(ids):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model(ids).logits

    for length in args.test_lengths:
        for task in args.tasks:
            if time.time() > deadline:
                print(f"  {task} {length:>6d}: skipped (deadline)", flush=True)
                continue
            samples = list(gen.sweep([task], [length], args.samples))
            scores = teacher_forced_exact_match(logits_fn, samples, TOK.encode, PAD, args.eval_batch, device)
            records += [{"task": task, "length": length, "index": s.index, "answer": s.answer, "score": sc}
                        for s, sc in zip(samples, scores)]
            print(f"  {task} {length:>6d}: {100 * np.mean(scores):5.1f}%", flush=True)
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["transformer", "swa", "mac", "lmm"])
    p.add_argument("--facts", nargs="+", default=[], metavar="TASK=N[@STEP]",
                   help="facts per story from a training step on, e.g. qa1=2 qa1=4@3000 qa1=8@6000 (a "
                        "curriculum); the test uses each task's last stage (default: the task's, "
                        "titans.evaluation.babilong.DEFAULT_FACTS)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--expansion", type=float, default=4.0, help="memory MLP hidden = expansion × head_dim")
    p.add_argument("--theta-max", type=float, default=None, help="memory inner learning-rate bound "
                   "(default: the library's)")
    p.add_argument("--segment", type=int, default=256, help="MAC segment = sliding window of swa")
    p.add_argument("--train-len", type=int, default=1024)
    p.add_argument("--zero-fraction", type=float, default=0.25,
                   help="share of training stories without background (BABILong's 0K)")
    p.add_argument("--context-loss", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--niah-fraction", type=float, default=0.75, help="share of bAbI samples per batch")
    add_training_options(p)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--max-seconds", type=float, default=60.0, help="per-model training time cap")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--test-lengths", nargs="+", type=int, default=[0, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--samples", type=int, default=20, help="test stories per (task, length)")
    p.add_argument("--eval-batch", type=int, default=10)
    p.add_argument("--haystack", default="../shared/data/gutenberg/test.jsonl.gz")
    p.add_argument("--lm-data", default="../shared/data/gutenberg/train-00.jsonl.gz")
    p.add_argument("--lm-bytes", type=int, default=20_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deadline", type=float, default=math.inf,
                   help="seconds after start past which no model starts training and no test length "
                        "starts (the results written so far are kept)")
    p.add_argument("--out", default="experiments/babilong/results")
    args = p.parse_args()
    args.facts = parse_facts(args.facts)
    for name in args.models:  # a bad name fails now, not after the models before it trained
        model_config(name, args)
    deadline = time.time() + args.deadline

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    lm = lm_tokens(args.lm_data, args.lm_bytes)
    stage_generators: dict[tuple, BabilongGenerator] = {}

    def train_generator_at(step: int) -> BabilongGenerator:
        facts = facts_at(args.facts, step)
        key = tuple(sorted(facts.items()))
        if key not in stage_generators:
            stage_generators[key] = BabilongGenerator(TOK.encode, seed=1000 + args.seed,
                                                      haystack_path=args.haystack, num_facts=facts)
        return stage_generators[key]

    test_gen = BabilongGenerator(TOK.encode, seed=4321, haystack_path=args.haystack,
                                 num_facts=facts_at(args.facts, math.inf))
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
        tr = train(model, args, lm, babilong_examples(train_generator_at, args), device, ckpt)
        if args.export:
            model.save_pretrained(Path(args.export) / name)  # JSON config + safetensors
        t0 = time.time()
        records = [] if args.no_test else test(model, args, test_gen, device, deadline)
        acc = {}
        for r in records:
            acc.setdefault(f"{r['task']}@{r['length']}", []).append(r["score"])
        summary["models"][name] = {"config": model.config.to_dict(), "init": args.init,
                                   "params": model.num_parameters(), **tr,
                                   "test_seconds": time.time() - t0,
                                   "accuracy": {k: 100 * float(np.mean(v)) for k, v in acc.items()},
                                   "records": records}
        (out / "babilong_results.json").write_text(json.dumps(summary, indent=1) + "\n")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
