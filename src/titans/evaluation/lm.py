"""Language-model evaluation: loss, perplexity and bits per byte, with per-position loss.

Three modes over a token stream (documents joined by the separator, as packed for training):

* ``segments``: independent windows of ``seq_len`` tokens (what training-time validation uses);
  every window starts from a fresh memory/context.
* ``stream``: the stream is cut into ``lanes`` contiguous lanes (the batch); each lane is fed in
  segments of ``seq_len`` with the model cache carried across segments, so the neural memory
  (and any attention cache) sees everything before, far beyond the training length.
* ``sliding``: windows of ``seq_len`` advanced by ``stride``; each window scores only its last
  ``stride`` tokens, all with at least ``seq_len - stride`` tokens of context (the usual
  evaluation for models without a recurrent state).

Bits per byte = total nats / ln 2 / total UTF-8 bytes of the scored targets (the separator
counts 0 bytes). "Position" of a scored token = how many tokens of its own document precede it
and were visible to the model (documents start after each separator; a lane or window start
counts as a start), so a falling loss-vs-position curve shows long-context benefit.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MODES = ("segments", "stream", "sliding")


@dataclass
class LMEvalResult:
    """Totals of one evaluation; ``position_*`` are per bin of ``bin_size`` positions."""

    mode: str
    seq_len: int
    tokens: int
    bytes: int
    nats: float
    bin_size: int = 0
    position_loss: list[float] = field(default_factory=list)
    position_tokens: list[int] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return self.nats / max(1, self.tokens)

    @property
    def ppl(self) -> float:
        return math.exp(min(self.loss, 50.0))

    @property
    def bpb(self) -> float:
        return self.nats / math.log(2) / max(1, self.bytes)

    def summary(self) -> dict:
        return {"mode": self.mode, "seq_len": self.seq_len, "tokens": self.tokens, "bytes": self.bytes,
                "loss": self.loss, "ppl": self.ppl, "bpb": self.bpb}

    def to_dict(self) -> dict:
        return {**asdict(self), **self.summary()}


class _Accumulator:
    def __init__(self, token_bytes: np.ndarray, bin_size: int, num_bins: int):
        self.token_bytes = torch.as_tensor(token_bytes, dtype=torch.float64)
        self.bin_size = bin_size
        self.num_bins = num_bins
        self.nats = 0.0
        self.tokens = 0
        self.bytes = 0
        self.bin_nats = np.zeros(num_bins)
        self.bin_count = np.zeros(num_bins, dtype=np.int64)

    def add(self, losses: torch.Tensor, targets: torch.Tensor, positions: np.ndarray | None) -> None:
        losses = losses.double().cpu()
        targets = targets.cpu()
        self.nats += float(losses.sum())
        self.tokens += losses.numel()
        self.bytes += int(self.token_bytes[targets].sum())
        if positions is not None and self.bin_size:
            bins = np.minimum(positions.reshape(-1) // self.bin_size, self.num_bins - 1)
            self.bin_nats += np.bincount(bins, weights=losses.numpy().reshape(-1), minlength=self.num_bins)
            self.bin_count += np.bincount(bins, minlength=self.num_bins)

    def reduce(self, device: torch.device) -> None:
        """Sum over processes (no-op without torch.distributed)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        totals = torch.tensor([self.nats, float(self.tokens), float(self.bytes)], dtype=torch.float64,
                              device=device)
        torch.distributed.all_reduce(totals)
        self.nats, self.tokens, self.bytes = float(totals[0]), int(totals[1]), int(totals[2])
        if self.bin_size:
            b = torch.from_numpy(np.concatenate([self.bin_nats, self.bin_count])).to(device)
            torch.distributed.all_reduce(b)
            b = b.cpu().numpy()
            self.bin_nats, self.bin_count = b[: self.num_bins], b[self.num_bins:].astype(np.int64)

    def result(self, mode: str, seq_len: int) -> LMEvalResult:
        used = int(np.flatnonzero(self.bin_count).max()) + 1 if self.bin_count.any() else 0
        loss = (self.bin_nats[:used] / np.maximum(self.bin_count[:used], 1)).tolist()
        return LMEvalResult(mode, seq_len, self.tokens, self.bytes, self.nats, self.bin_size, loss,
                            self.bin_count[:used].tolist())


def document_positions(tokens: np.ndarray, eos_id: int) -> np.ndarray:
    """``[N]`` index of each token within its document (0 right after a separator; the separator
    itself is the last token of the document it ends)."""
    tokens = np.asarray(tokens)
    idx = np.arange(len(tokens), dtype=np.int64)
    starts = np.zeros(len(tokens), dtype=np.int64)
    starts[1:] = np.where(tokens[:-1] == eos_id, idx[1:], 0)
    return idx - np.maximum.accumulate(starts)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def token_losses(model, inputs: torch.Tensor, targets: torch.Tensor, cache=None, use_cache: bool = False,
                 autocast_dtype: torch.dtype | None = None):
    """Per-token cross-entropy ``[B, T]`` (float32) and the model's new cache."""
    with _autocast(inputs.device, autocast_dtype):
        out = model(inputs, cache=cache, use_cache=use_cache)
    losses = F.cross_entropy(out.logits.float().transpose(1, 2), targets, reduction="none")
    return losses, getattr(out, "cache", None)


@torch.no_grad()
def evaluate_lm(model, tokens: np.ndarray, token_bytes: np.ndarray, eos_id: int, seq_len: int,
                mode: str = "segments", batch_size: int = 8, max_tokens: int | None = None,
                stride: int | None = None, bin_size: int = 0, num_bins: int = 512,
                device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
                rank: int = 0, world_size: int = 1, progress: bool = False) -> LMEvalResult:
    """Evaluate ``model`` on a 1-D token stream; see the module docstring for the modes.

    batch_size: windows per forward (segments, sliding) or parallel lanes (stream).
    max_tokens: use only the first ``max_tokens + 1`` tokens of the stream.
    bin_size: positions per bin of the per-position loss (0 disables it).
    Under torch.distributed, each rank takes its share of the windows/lanes and totals are summed.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_tokens is not None:
        tokens = tokens[: max_tokens + 1]
    if len(tokens) < 2:
        raise ValueError("evaluation needs at least 2 tokens")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    acc = _Accumulator(token_bytes, bin_size, num_bins)
    doc_pos = document_positions(np.asarray(tokens), eos_id) if bin_size else None
    try:
        if mode == "segments":
            _segments(model, tokens, doc_pos, seq_len, batch_size, acc, device, autocast_dtype, rank,
                      world_size, progress)
        elif mode == "stream":
            _stream(model, tokens, doc_pos, seq_len, batch_size, acc, device, autocast_dtype, rank,
                    world_size, progress)
        else:
            stride = stride or seq_len // 2
            if not isinstance(stride, int) or not 0 < stride <= seq_len:
                raise ValueError(f"stride must be an int in [1, seq_len={seq_len}], got {stride!r}")
            _sliding(model, tokens, doc_pos, seq_len, stride, batch_size, acc, device, autocast_dtype,
                     rank, world_size, progress)
    finally:
        model.train(was_training)
    acc.reduce(device)
    return acc.result(mode, seq_len)


def _tqdm(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, leave=False, dynamic_ncols=True)


def _segments(model, tokens, doc_pos, L, B, acc, device, ac, rank, world, progress):
    n = (len(tokens) - 1) // L
    n -= n % world  # equal work on every rank
    mine = list(range(rank, n, world))
    with _tqdm(len(mine), progress, "eval") as bar:
        for s in range(0, len(mine), B):
            idx = mine[s: s + B]
            block = torch.from_numpy(np.stack([np.asarray(tokens[i * L: i * L + L + 1], dtype=np.int64)
                                               for i in idx])).to(device)
            losses, _ = token_losses(model, block[:, :-1], block[:, 1:], autocast_dtype=ac)
            pos = None
            if doc_pos is not None:
                pos = np.stack([np.minimum(doc_pos[i * L: i * L + L], np.arange(L)) for i in idx])
            acc.add(losses, block[:, 1:], pos)
            bar.update(len(idx))


def _stream(model, tokens, doc_pos, L, B, acc, device, ac, rank, world, progress):
    lanes_total = B * world
    lane_len = (len(tokens) - 1) // lanes_total
    if lane_len < 1:
        raise ValueError(f"stream of {len(tokens)} tokens is too short for {lanes_total} lanes")
    starts = [(rank * B + b) * lane_len for b in range(B)]
    data = torch.from_numpy(np.stack([np.asarray(tokens[s: s + lane_len + 1], dtype=np.int64)
                                      for s in starts])).to(device)
    cache = None
    with _tqdm(lane_len * B, progress, "eval stream") as bar:
        for s in range(0, lane_len, L):
            e = min(s + L, lane_len)
            losses, cache = token_losses(model, data[:, s:e], data[:, s + 1: e + 1], cache=cache,
                                         use_cache=True, autocast_dtype=ac)
            if cache is None:
                raise ValueError("stream mode needs a model that returns a cache with use_cache=True")
            pos = None
            if doc_pos is not None:
                pos = np.stack([np.minimum(doc_pos[st + s: st + e], np.arange(s, e)) for st in starts])
            acc.add(losses, data[:, s + 1: e + 1], pos)
            bar.update((e - s) * B)


def _sliding(model, tokens, doc_pos, L, S, B, acc, device, ac, rank, world, progress):
    N = len(tokens) - 1  # number of predictable targets
    # window i scores targets [ends[i-1], ends[i]) with inputs [max(0, ends[i] - L), ends[i])
    ends = sorted(set(list(range(min(L, N), N, S)) + [N]))
    n = len(ends) - len(ends) % world if len(ends) >= world else len(ends)
    mine = [(ends[i - 1] if i else 0, ends[i]) for i in range(rank, n, world)]
    with _tqdm(len(mine), progress, "eval sliding") as bar:
        s = 0
        while s < len(mine):
            # windows of full width L batch together; the first (shorter) one runs alone
            group = mine[s: s + B] if mine[s][1] >= L else mine[s: s + 1]
            group = [g for g in group if g[1] >= L] or group[:1]
            begins = [max(0, hi - L) for _, hi in group]
            block = torch.from_numpy(np.stack([np.asarray(tokens[b: hi + 1], dtype=np.int64)
                                               for b, (_, hi) in zip(begins, group)])).to(device)
            losses, _ = token_losses(model, block[:, :-1], block[:, 1:], autocast_dtype=ac)
            for row, (b, (lo, hi)) in enumerate(zip(begins, group)):
                k = hi - lo
                pos = None
                if doc_pos is not None:
                    pos = np.minimum(doc_pos[lo: hi], np.arange(lo - b, hi - b))[None]
                acc.add(losses[row: row + 1, -k:], block[row: row + 1, 1:][:, -k:], pos)
            s += len(group)
            bar.update(len(group))


def plot_per_position(results: dict[str, LMEvalResult], path: str | Path, title: str = "") -> None:
    """Loss vs. token position (one line per labelled result), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, r in results.items():
        if not r.position_loss:
            continue
        centers = (np.arange(len(r.position_loss)) + 0.5) * r.bin_size
        ax.plot(centers, r.position_loss, label=label)
    ax.set_xlabel("token position within document (context seen)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_xscale("symlog", linthresh=max(1, min(r.bin_size for r in results.values()) or 1))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_result(results: dict[str, LMEvalResult], path: str | Path, extra: dict | None = None) -> None:
    data = {"results": {k: v.to_dict() for k, v in results.items()}, **(extra or {})}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
