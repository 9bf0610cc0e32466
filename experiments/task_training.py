"""The training harness shared by the retrieval experiments (S-NIAH: ``niah/run_niah.py``;
BABILong-style bAbI: ``babilong/run_babilong.py``): byte-level models trained from scratch on
batches that mix task samples (loss on the answer), copy samples and LM text.

* :func:`model_config` — the compared models (MAC, LMM and its ablations, Transformer++,
  sliding-window Transformer) at the experiments' small size;
* :func:`make_batch` / :class:`TrainingBatches` — batches built in DataLoader workers;
* :func:`train` — AdamW with warm-up and cosine, a time cap, non-finite-gradient skipping,
  checkpoint and resume; :func:`report_non_finite` / :func:`locate_non_finite_backward` —
  where a NaN comes from (``--debug-nan``);
* :func:`add_training_options` — the command-line options of all of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gzip
import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model_options import add_model_options, mac_options, memory_overrides  # experiments/ is on the path

from titans.data.tokenizer import ByteTokenizer
from titans.models import ABLATIONS, ModelConfig, TitansLM, get_config
from titans.training.cuda_graph import GraphedTrainStep

TOK = ByteTokenizer()
_ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PAD = TOK.eos_id


def model_config(name: str, args: argparse.Namespace):
    """The model ``name``: mac (``mac-token``: with per-token retrieval; ``mac-input``: writing its
    input tokens), mag, mal (window =
    ``--segment``, 16 persistent tokens), lmm,
    transformer, swa, or an LMM ablation of
    ``titans.models.ABLATIONS`` (the S-NIAH LMM has no persistent tokens, so ``lmm-nopersistent``
    is ``lmm`` itself)."""
    memory = {"chunk_size": args.chunk, "expansion": args.expansion}
    if args.theta_max is not None:
        memory["theta_max"] = args.theta_max
    memory.update(memory_overrides(args))
    if args.eta_max is not None:
        memory["eta_max"] = args.eta_max
        memory["eta_init"] = min(0.6, args.eta_max / 2)
    overrides = dict(ABLATIONS.get(name, {}))
    memory.update(overrides.pop("memory", {}))
    common = dict(vocab_size=256, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                  attn_backend="sdpa", memory=memory)
    if name in ("mac", "mac-token", "mac-input"):  # per-token read / input write whatever the flags say
        mac = mac_options(args)
        if name == "mac-token":
            mac["mac_retrieval"] = "token"
        if name == "mac-input":
            mac["mac_write"] = "input"
        return get_config("tiny-mac", segment_len=args.segment, n_persistent=16, n_retrieve=16, **mac,
                          **common)
    if name in ("mag", "mal"):  # sliding-window attention of the MAC segment's length
        return get_config(f"tiny-{name}", window=args.segment, n_persistent=16, **common)
    if name == "lmm" or name in ABLATIONS:
        return get_config("tiny-lmm", **{"n_persistent": 0, **overrides}, **common)
    if name == "transformer":
        return get_config("tiny-transformer", **common)
    if name == "swa":
        return get_config("tiny-transformer", window=args.segment, **common)
    raise ValueError(f"model must be mac, mac-token, mac-input, mag, mal, lmm, transformer, swa or one of "
                     f"{sorted(ABLATIONS)}, got {name!r}")


def build_model(name: str, args: argparse.Namespace, device: torch.device) -> TitansLM:
    """The harness model ``name`` on ``device``: freshly initialised, or with ``--init``, the model
    exported to ``INIT/name`` by an earlier ``--export`` (its config must equal the one the flags
    describe, so a continued run cannot silently change the architecture)."""
    cfg = model_config(name, args)
    if args.init is None:
        return TitansLM(cfg).to(device)
    model = TitansLM.from_pretrained(Path(args.init) / name, map_location=device)
    diff = config_diff(effective_config(model.config), effective_config(cfg))
    refused = {k: v for k, v in diff.items() if k not in args.init_changes}
    if refused:
        raise ValueError(f"--init {args.init}/{name}: its config differs from the flags' "
                         f"(field: (exported, flags)): {refused}; fields that keep every weight's "
                         f"shape may be changed on purpose with --init-changes FIELD")
    if diff:  # only fields named by --init-changes: the flags' model, the exported weights
        weights = model.state_dict()
        model = TitansLM(cfg).to(device)
        model.load_state_dict(weights, strict=True)
        print(f"  {name}: changed from the export: {diff}", flush=True)
    print(f"  {name}: weights from {Path(args.init) / name}", flush=True)
    return model


def effective_config(cfg: ModelConfig) -> dict:
    """``cfg.to_dict()`` with ``memory`` holding every memory field's value, defaults included
    (an export that leaves a field at the library default equals flags that set that default)."""
    d = cfg.to_dict()
    if cfg.uses_memory:
        d["memory"] = dataclasses.asdict(cfg.memory_config())
    return d


def config_diff(exported: dict, flags: dict, prefix: str = "") -> dict[str, tuple]:
    """``{dotted.field: (exported, flags)}`` for every field where two config dicts differ."""
    out: dict[str, tuple] = {}
    for k in sorted(set(exported) | set(flags)):
        a, b = exported.get(k), flags.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(config_diff(a, b, f"{prefix}{k}."))
        elif a != b:
            out[f"{prefix}{k}"] = (a, b)
    return out


def lm_tokens(path: str, max_bytes: int) -> np.ndarray:
    out, n = [], 0
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            data = (json.loads(line)["text"] + "\x00").encode("utf-8")
            out.append(np.frombuffer(data, dtype=np.uint8))
            n += len(data)
            if n >= max_bytes:
                break
    return np.concatenate(out)[:max_bytes]


def copy_example(rng: random.Random, max_len: int) -> tuple[list[int], int]:
    """(ids, copy start) of a dense copy sample: a random alphanumeric string of random length,
    a separator, the same string again (the loss is on the repeat). It trains the content-based
    copy (induction) that S-NIAH needs with every repeated byte supervised (an S-NIAH sample
    supervises only its ~9 answer bytes)."""
    n = rng.randint(8, max(8, (max_len - 1) // 2))
    chars = [rng.choice(_ALNUM) for _ in range(n)]
    return chars + [ord("|")] + chars, n + 1


def embedded_copy_example(rng: random.Random, lm: np.ndarray, max_len: int) -> tuple[list[int], int]:
    """(ids, cue end) of a copy sample that needs content-based recall: LM text of random length
    with a random alphanumeric string S (16–40 bytes) inserted at a random place, then the first
    6 bytes of S as a cue and the rest of S (the loss is on the rest). Unlike ``copy_example``
    the source is not at the sequence start and no separator marks the repeat, so a positional
    rule cannot solve it: the model must find the cue in the text, as S-NIAH's answer must find
    its key."""
    m, cue = rng.randint(16, 40), 6
    chars = [rng.choice(_ALNUM) for _ in range(m)]
    n_text = rng.randint(max(8, max_len // 4), max(8, max_len - 2 * m))  # + S inside + S at the end
    o = rng.randrange(0, len(lm) - n_text - 1)
    text = lm[o:o + n_text].tolist()
    at = rng.randint(0, len(text))
    ids = text[:at] + chars + text[at:] + chars[:cue] + chars[cue:]
    return ids, len(ids) - (m - cue) - 1


def make_batch(args: argparse.Namespace, lm: np.ndarray, make_example: Callable, rng: random.Random,
               nprng: np.random.Generator, index: int) -> dict[str, torch.Tensor]:
    """One training batch on the CPU: ``round(batch * niah_fraction)`` task samples from
    ``make_example(rng, index)`` (index counts up from ``index``), ``round(batch * copy_fraction)``
    copy samples and LM text for the rest. ``ids``/``tgt`` are ``[batch, T]`` (-100 = no loss);
    ``is_niah``/``is_answer``/``is_copy`` mark the rows and positions of each loss term."""
    n_niah = int(round(args.batch * args.niah_fraction))
    n_copy = int(round(args.batch * args.copy_fraction))
    task = [make_example(rng, index + i) for i in range(n_niah)]
    copies = [copy_example(rng, args.copy_len) if args.copy_mode == "plain"
              else embedded_copy_example(rng, lm, args.copy_len) for _ in range(n_copy)]
    # Task samples may exceed the nominal length (a bAbI story alone can); the batch grows.
    T = max([args.train_len + 48] + [len(seq) for seq, _ in task + copies])
    ids = torch.full((args.batch, T), PAD, dtype=torch.long)
    tgt = torch.full((args.batch, T), -100, dtype=torch.long)
    is_niah = torch.zeros(args.batch, T, dtype=torch.bool)
    is_answer = torch.zeros(args.batch, T, dtype=torch.bool)
    is_copy = torch.zeros(args.batch, T, dtype=torch.bool)
    if args.fill == "lm":  # the unused tail of task samples: text, not one repeated token
        for b in range(n_niah + n_copy):
            o = int(nprng.integers(0, len(lm) - T - 1))
            ids[b] = torch.from_numpy(lm[o:o + T].astype(np.int64))
    for b in range(args.batch):
        if b < n_niah:
            seq, a = task[b]
            seq = torch.tensor(seq)
            ids[b, :len(seq)] = seq
            tgt[b, :len(seq) - 1] = seq[1:]
            # ``a``: where the answer starts, or a list of (start, end) answer spans.
            for lo, hi in ([(a, len(seq))] if isinstance(a, int) else a):
                is_answer[b, lo - 1:hi - 1] = True
            is_niah[b] = True
        elif b < n_niah + n_copy:
            seq, a = copies[b - n_niah]
            seq = torch.tensor(seq)
            ids[b, :len(seq)] = seq
            tgt[b, a:len(seq) - 1] = seq[a + 1:]
            is_copy[b] = True
        else:
            o = int(nprng.integers(0, len(lm) - T - 1))
            chunk = torch.from_numpy(lm[o:o + T + 1].astype(np.int64))
            ids[b], tgt[b] = chunk[:-1], chunk[1:]
    return {"ids": ids, "tgt": tgt, "is_niah": is_niah, "is_answer": is_answer, "is_copy": is_copy}


class TrainingBatches(torch.utils.data.IterableDataset):
    """Endless ``make_batch`` batches. Worker ``w`` of ``n`` (``--workers``; 0 = in-process, as
    one worker) draws from its own generators seeded by (seed, w) and numbers its samples
    ``w, w + n, ...`` batch by batch, so a run is a pure function of (seed, workers). Sample
    building is Python-heavy (~3 ms an S-NIAH sample): on a GPU, in-process building took
    ~10× the small models' step time."""

    def __init__(self, args: argparse.Namespace, lm: np.ndarray, make_example: Callable,
                 first_step: int = 0):
        self.args, self.lm, self.make_example = args, lm, make_example
        self.first_step = first_step  # a resumed run draws a new stream, not the first one again

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (0, 1) if info is None else (info.id, info.num_workers)
        rng = random.Random(self.args.seed * 1009 + w + 1_000_003 * self.first_step)
        nprng = np.random.default_rng((self.args.seed, w, self.first_step))
        per_batch = int(round(self.args.batch * self.args.niah_fraction))
        k = 0
        while True:
            index = (self.first_step + k * n + w) * per_batch
            yield make_batch(self.args, self.lm, self.make_example, rng, nprng, index)
            k += 1


def batch_losses(model, batch: dict[str, torch.Tensor], context_loss: float,
                 cache_enabled: bool = True) -> dict[str, torch.Tensor]:
    """The training losses of one batch (``make_batch``'s dict, on the model's device): LM loss
    on text rows, the task loss on answer positions, the prompt LM loss of task rows, the copy
    loss, and ``loss`` = their sum with ``context_loss`` weighting the prompt term. Free of host
    syncs (masked sums, not boolean indexing), so it can be captured in a CUDA graph; an empty
    term is 0."""
    device_type = batch["ids"].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=device_type == "cuda",
                        cache_enabled=cache_enabled):
        logits = model(batch["ids"]).logits.float()
    tgt = batch["tgt"]
    ce = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100, reduction="none")
    ce = ce.view_as(tgt)
    valid, is_niah, is_copy = tgt != -100, batch["is_niah"], batch["is_copy"]

    def mean(mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, ce, 0.0).sum() / mask.sum().clamp(min=1)

    out = {"lm": mean(valid & ~is_niah & ~is_copy), "niah": mean(batch["is_answer"]),
           "context": mean(valid & is_niah & ~batch["is_answer"]), "copy": mean(valid & is_copy)}
    out["loss"] = out["lm"] + out["niah"] + context_loss * out["context"] + out["copy"]
    return out


def _grad_norm(model) -> float:
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None]).item()


def check_graph(graphed, forward, model, batch, args, rtol: float = 0.05):
    """Capture the first batch's graph and compare its loss and gradient norm with an eager step
    on the same batch (weights unchanged in between). Returns ``graphed``, or None (train
    eagerly) with a printed reason when they differ by more than ``rtol``."""
    for p in model.parameters():
        p.grad = None
    eager = batch_losses(forward, batch, args.context_loss)
    eager["loss"].backward()
    e_loss, e_norm = eager["loss"].item(), _grad_norm(model)
    del eager  # its autograd graph would keep the eager stream's gradient accumulators alive
    start = time.time()
    try:
        g_loss, g_norm = graphed(batch)["loss"].item(), _grad_norm(model)
    except RuntimeError as e:  # a capture failure costs the speed-up, not the run
        print(f"  CUDA graph capture failed ({e}); training eagerly", flush=True)
        return None
    ok = abs(g_loss - e_loss) <= rtol * abs(e_loss) and abs(g_norm - e_norm) <= rtol * e_norm
    print(f"  CUDA graph ({time.time() - start:.1f}s to capture): loss {g_loss:.4f} vs eager "
          f"{e_loss:.4f}, |g| {g_norm:.4f} vs {e_norm:.4f}"
          + ("" if ok else " — MISMATCH, training eagerly"), flush=True)
    return graphed if ok else None


def train(model, args, lm: np.ndarray, make_example: Callable, device,
          checkpoint: Path | None = None) -> dict:
    """Train on batches of ``round(batch * niah_fraction)`` task samples from ``make_example``
    (loss on the answer; ``context_loss`` weights an LM loss on their prompt tokens) and LM text.
    Stops at ``args.steps`` or after ``args.max_seconds`` in this call, whichever comes first. A
    batch with non-finite gradients is skipped (``--nonfinite-grads``) and its step recorded.

    ``checkpoint``: written (atomically) when training stops — weights, optimizer, steps, time
    and log; with ``args.resume`` an existing one is loaded first and training continues from it
    (the learning-rate schedule runs over ``args.total_seconds`` of training in all calls)."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    first_step, prior_seconds, log, skipped = 0, 0.0, [], []
    if args.resume and args.total_seconds is None:
        raise ValueError("--resume needs --total-seconds (the schedule's length over all calls); "
                         "without it the resumed call would train at the floor learning rate")
    if checkpoint is not None and args.resume and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        first_step, prior_seconds = int(saved["steps"]), float(saved["train_seconds"])
        log, skipped = json.loads(saved["log"]), json.loads(saved["skipped_steps"])
        print(f"  resumed from {checkpoint} at step {first_step} ({prior_seconds:.0f}s trained)", flush=True)
    total_seconds = args.total_seconds or args.max_seconds
    n_niah = int(round(args.batch * args.niah_fraction))
    n_copy = int(round(args.batch * args.copy_fraction))
    if n_niah + n_copy > args.batch:
        raise ValueError(f"niah_fraction + copy_fraction must be <= 1, got {args.niah_fraction} + "
                         f"{args.copy_fraction}")
    forward = torch.compile(model) if args.compile else model
    graphed, graph_checked = None, False
    if args.cuda_graph:
        if device.type != "cuda":
            raise ValueError("--cuda-graph needs a CUDA device")
        graphed = GraphedTrainStep(
            forward, functools.partial(batch_losses, context_loss=args.context_loss, cache_enabled=False))
    workers = args.workers
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    loader = torch.utils.data.DataLoader(
        # The stream of a resumed run starts after every batch drawn before, skipped ones included.
        TrainingBatches(args, lm, make_example, first_step + len(skipped)), batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    batches = iter(loader)
    start, step = time.time(), first_step
    while step < args.steps and time.time() - start < args.max_seconds:
        # Cosine to 10% over the run: its progress is steps done or the time cap used, whichever
        # is further, so the schedule completes even when the time cap binds.
        trained = prior_seconds + time.time() - start
        progress = min(1.0, max(step / args.steps, trained / total_seconds))
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        if graphed is not None and not graph_checked:
            graphed, graph_checked = check_graph(graphed, forward, model, batch, args), True
        if graphed is not None:
            losses = graphed(batch)
        else:
            opt.zero_grad(set_to_none=True)
            losses = batch_losses(forward, batch, args.context_loss)
            losses["loss"].backward()
        loss, lm_loss, niah_loss = losses["loss"], losses["lm"], losses["niah"]
        ctx_loss, copy_loss = losses["context"], losses["copy"]
        if args.debug_nan and not torch.isfinite(loss):
            report_non_finite(model, batch["ids"], device)
            break
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not torch.isfinite(grad_norm):
            if args.debug_nan:
                bad = [n for n, p in model.named_parameters()
                       if p.grad is not None and not torch.isfinite(p.grad).all()]
                print(f"  step {step + 1}: loss {loss.item():.3f}, non-finite gradients in "
                      f"{len(bad)} tensors: {bad[:12]}", flush=True)
                report_non_finite(model, batch["ids"], device)
                locate_non_finite_backward(model, batch["ids"], batch["tgt"], device)
                break
            if args.nonfinite_grads == "skip":
                # Leave the weights and the optimizer state as they are; the batch is dropped.
                skipped.append(step + 1)
                opt.zero_grad(set_to_none=True)
                print(f"  step {step + 1}: non-finite gradients (loss {loss.item():.3f}), batch "
                      f"skipped ({len(skipped)} so far)", flush=True)
                if len(skipped) > args.max_skipped_steps:
                    print(f"  stopping: more than {args.max_skipped_steps} skipped batches", flush=True)
                    break
                continue
        opt.step()
        step += 1
        if step % 10 == 0 or step == 1:
            seconds = prior_seconds + time.time() - start
            log.append({"step": step, "lm_loss": lm_loss.item(), "niah_loss": niah_loss.item(),
                        "context_loss": ctx_loss.item(), "copy_loss": copy_loss.item(),
                        "grad_norm": grad_norm.item(), "seconds": seconds})
            print(f"  step {step} lm {lm_loss.item():.3f} niah {niah_loss.item():.3f} "
                  f"ctx {ctx_loss.item():.3f} copy {copy_loss.item():.3f} |g| {grad_norm.item():.2f} "
                  f"({seconds:.0f}s)", flush=True)
    del batches, loader  # stops the workers
    result = {"steps": step, "train_seconds": prior_seconds + time.time() - start,
              "skipped_steps": skipped, "log": log}
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "steps": step,
                        "train_seconds": result["train_seconds"], "log": json.dumps(log),
                        "skipped_steps": json.dumps(skipped)}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(checkpoint)
    return result


def locate_non_finite_backward(model, ids: torch.Tensor, tgt: torch.Tensor, device) -> None:
    """Re-run forward and backward of the batch with a backward hook on every module and print
    the first module (in backward order) whose output gradient is finite but whose input
    gradient is not: the operation where the gradient overflows."""
    events = []

    def finite(ts):
        return all(torch.isfinite(t).all().item() for t in ts if torch.is_tensor(t))

    def hook(name):
        def fn(module, grad_input, grad_output):
            events.append((name, type(module).__name__, finite(grad_output), finite(grad_input),
                           [float(t.float().abs().nan_to_num(nan=-1.0, posinf=-1.0).max())
                            for t in grad_output if torch.is_tensor(t)]))
        return fn

    handles = [m.register_full_backward_hook(hook(n)) for n, m in model.named_modules() if n]
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(ids).logits.float()
    bad = ~torch.isfinite(logits).all(-1)
    scored = tgt != -100
    print(f"  positions with non-finite logits: {int(bad.sum())} ({int((bad & scored).sum())} of them "
          f"scored); first at (row, position) {bad.nonzero()[:3].tolist()}", flush=True)
    F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100).backward()
    for h in handles:
        h.remove()
    first = next((e for e in events if e[2] and not e[3]), None)
    bad_out = next((e for e in events if not e[2]), None)
    print(f"  backward: first module with finite output grad but non-finite input grad: {first}; "
          f"first module with non-finite output grad: {bad_out}", flush=True)
    model.zero_grad(set_to_none=True)


@torch.no_grad()
def report_non_finite(model, ids: torch.Tensor, device) -> None:
    """Print where a non-finite loss comes from: parameters that are already non-finite, else
    the first module (in call order) whose output is, with its input and output ranges."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        print(f"  non-finite parameters: {bad[:10]}", flush=True)
        return
    found = []

    def stats(x):
        xs = [t for t in (x if isinstance(x, (tuple, list)) else (x,)) if torch.is_tensor(t)]
        return [(tuple(t.shape), str(t.dtype), float(t.float().abs().nan_to_num(posinf=-1).max()))
                for t in xs if t.is_floating_point()]

    def hook(name):
        def fn(module, inputs, output):
            outs = output if isinstance(output, (tuple, list)) else (output,)
            if not found and any(torch.is_tensor(o) and o.is_floating_point() and not torch.isfinite(o).all()
                                 for o in outs):
                found.append(name)
                print(f"  first non-finite output: {name} ({type(module).__name__}); "
                      f"inputs {stats(inputs)}; outputs {stats(output)}", flush=True)
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    gates = {}

    def gate_hook(name):
        def fn(module, inputs, output):  # θ/θ_max, η/η_max, α logits per head: [B, T, 3H]
            th, et, al = torch.sigmoid(output.float()).chunk(3, dim=-1)
            g = gates.setdefault(name, [0.0, 0.0, 1.0])
            g[0], g[1] = max(g[0], th.max().item()), max(g[1], et.max().item())
            g[2] = min(g[2], al.min().item())
        return fn

    handles += [m.register_forward_hook(gate_hook(n)) for n, m in model.named_modules()
                if n.endswith("memory.gate_proj")]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        model(ids)
    for name, (th, et, al) in gates.items():
        print(f"  {name}: max θ/θ_max {th:.3f}, max η/η_max {et:.4f}, min α {al:.2e}", flush=True)
    for h in handles:
        h.remove()
    if not found:
        print("  forward is finite on a re-run: the non-finite value is in the loss itself", flush=True)
    for n, p in model.named_parameters():
        if "memory_init" in n or "gate_proj" in n:
            print(f"  {n}: max |.| {p.abs().max().item():.3g}", flush=True)


@torch.no_grad()
def add_training_options(p: argparse.ArgumentParser) -> None:
    """Memory and batch-mix options of :func:`model_config` and :func:`train`, shared with
    ``experiments/babilong/run_babilong.py``."""
    p.add_argument("--nonfinite-grads", choices=["skip", "apply"], default="skip",
                   help="a batch whose gradients are not finite: skip it (weights and optimizer "
                   "state untouched) or apply it as runs 1-8 did (the weights turn NaN)")
    p.add_argument("--max-skipped-steps", type=int, default=100,
                   help="stop training after more skipped batches than this")
    p.add_argument("--checkpoint", default=None, help="directory: each model's weights and "
                   "optimizer are saved there as MODEL.pt when its training stops")
    p.add_argument("--resume", action="store_true", help="continue training from --checkpoint's "
                   "MODEL.pt where one exists (for runs longer than one device command)")
    p.add_argument("--total-seconds", type=float, default=None, help="training seconds the "
                   "learning-rate schedule spans over all resumed calls (default: --max-seconds)")
    p.add_argument("--no-test", action="store_true", help="train (and checkpoint) only")
    p.add_argument("--init", default=None, help="directory of models exported by --export: each "
                   "model starts from INIT/MODEL's weights (fresh optimizer and schedule; with "
                   "--steps 0, test only)")
    p.add_argument("--init-changes", nargs="+", default=[], metavar="FIELD",
                   help="config fields (dotted, e.g. memory.forget_target) the flags may change "
                   "from the --init export; every weight must keep its shape")
    p.add_argument("--export", default=None, help="directory: each trained model is saved there "
                   "as MODEL/ (config JSON + safetensors, loadable with TitansLM.from_pretrained)")
    p.add_argument("--compile", action="store_true", help="train through torch.compile(model) "
                   "(fuses the small per-segment ops that make MAC's step host-bound)")
    p.add_argument("--cuda-graph", action="store_true", help="capture forward + loss + backward "
                   "as a CUDA graph per batch shape and replay it (the small models are "
                   "launch-bound; the first batch is checked against an eager step)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes building the "
                   "training batches (0: in the training process; the batches depend on it)")
    add_model_options(p)
    p.add_argument("--eta-max", type=float, default=None,
                   help="memory momentum bound η ≤ eta_max (default: the library's, 1)")
    p.add_argument("--debug-nan", action="store_true",
                   help="on a non-finite loss, report where it comes from and stop training")
    p.add_argument("--fill", choices=["pad", "lm"], default="pad",
                   help="what follows a task sample up to the batch length (no loss there): the pad "
                        "token repeated, or LM text (a run of one repeated token can make the deep "
                        "memory diverge, docs/design.md)")
    p.add_argument("--copy-fraction", type=float, default=0.0,
                   help="fraction of each batch that is dense copy samples (see --copy-mode)")
    p.add_argument("--copy-len", type=int, default=128, help="longest copy sample (tokens)")
    p.add_argument("--copy-mode", choices=["plain", "embedded"], default="plain",
                   help="plain: string | string; embedded: a string inside LM text, recalled from "
                        "a 6-byte cue at the end (needs content-based recall)")
