"""``TitansLM``: embeddings → blocks → RMSNorm → LM head, with caches, generation, streaming and
save/load (``config.json`` + ``model.safetensors``)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .blocks import Block, detach_cache
from .config import ModelConfig
from .lmm import LMMMixer
from .mac import MACMixer
from .mag import MAGMixer
from .mal import MALMixer
from .transformer import AttentionMixer

MIXERS = {"mac": MACMixer, "mag": MAGMixer, "mal": MALMixer, "lmm": LMMMixer,
          "transformer": AttentionMixer}
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
# Output projections of residual branches get std init_std / sqrt(2 n_layers) (GPT-2 style).
_RESIDUAL_OUT = ("o_proj", "down", "out_proj", "gate.proj")


@dataclass
class LMCache:
    """Per-layer caches and the number of tokens consumed."""

    layers: list[Any]
    pos: int = 0

    def detach(self) -> LMCache:
        return LMCache([detach_cache(c) for c in self.layers], self.pos)


@dataclass
class LMOutput:
    logits: Tensor  # [B, T, V]
    loss: Tensor | None = None  # mean cross-entropy over targets != -100
    cache: LMCache | None = None


class TitansLM(nn.Module):
    """Language model of one variant (``config.variant``): see :class:`ModelConfig`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(Block(c, MIXERS[c.variant](c)) for _ in range(c.n_layers))
        self.norm = nn.RMSNorm(c.d_model, eps=c.norm_eps)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.head.weight = self.embed.weight
        # Recompute each block in the backward pass (activation checkpointing) while training.
        self.gradient_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        c = self.config
        if self.embed.weight.is_meta:
            return
        out_std = c.init_std / (2 * c.n_layers) ** 0.5
        with torch.no_grad():
            nn.init.normal_(self.embed.weight, 0.0, c.init_std)
            for name, mod in self.named_modules():
                if isinstance(mod, nn.Linear) and mod is not self.head:
                    std = out_std if name.endswith(_RESIDUAL_OUT) else c.init_std
                    nn.init.normal_(mod.weight, 0.0, std)
            if not c.tie_embeddings:
                nn.init.normal_(self.head.weight, 0.0, c.init_std)

    def num_parameters(self) -> int:
        """Number of distinct parameters (a tied head is counted once)."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: Tensor, targets: Tensor | None = None, cache: LMCache | None = None,
                use_cache: bool = False) -> LMOutput:
        """input_ids: ``[B, T]`` → logits ``[B, T, V]``. targets ``[B, T]`` (``targets[:, t]`` is the
        token after ``input_ids[:, t]``, -100 = ignore) gives the mean cross-entropy. Pass
        ``cache`` (from ``use_cache=True``) to continue the same sequences."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        if targets is not None and targets.shape != input_ids.shape:
            raise ValueError(f"targets must have the shape of input_ids {tuple(input_ids.shape)}, "
                             f"got {tuple(targets.shape)}")
        x = self.embed(input_ids)
        layer_caches = [None] * len(self.blocks) if cache is None else cache.layers
        new_caches = []
        ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        want = use_cache or cache is not None
        for block, lc in zip(self.blocks, layer_caches):
            x, lc = checkpoint(block, x, lc, want, use_reentrant=False) if ckpt else block(x, lc, want)
            new_caches.append(lc)
        logits = self.head(self.norm(x))
        loss = None
        if targets is not None:
            scores = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
            flat = F.cross_entropy(scores.flatten(0, 1), targets.flatten(), ignore_index=-100,
                                   reduction="sum")
            loss = flat / (targets != -100).sum().clamp(min=1)
        new_cache = None
        if want:
            new_cache = LMCache(new_caches, (0 if cache is None else cache.pos) + input_ids.shape[1])
        return LMOutput(logits, loss, new_cache)

    # --------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(self, input_ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, eos_token_id: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Continue ``input_ids [B, T]`` by up to ``max_new_tokens`` → ``[B, T + n]``.

        ``temperature=0`` is greedy; ``top_k`` / ``top_p`` filter before sampling. Sequences that
        emitted ``eos_token_id`` are padded with it; generation stops when all have. Each new token
        costs one cached step (constant time and memory for the Titans variants and windowed
        attention)."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        out = self(input_ids, use_cache=True)
        ids, cache = [input_ids], out.cache
        logits = out.logits[:, -1]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for step in range(max_new_tokens):
            nxt = sample(logits, temperature, top_k, top_p, generator)
            if eos_token_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                done = done | (nxt == eos_token_id)
            ids.append(nxt.unsqueeze(1))
            if step + 1 == max_new_tokens or (eos_token_id is not None and bool(done.all())):
                break
            out = self(nxt.unsqueeze(1), cache=cache, use_cache=True)
            cache, logits = out.cache, out.logits[:, -1]
        return torch.cat(ids, dim=1)

    def stream(self, token_pieces: Iterable[Tensor], targets_pieces: Iterable[Tensor] | None = None,
               detach: bool = True) -> Iterator[LMOutput]:
        """Consume an arbitrarily long stream in pieces ``[B, T_i]``; yield one :class:`LMOutput`
        per piece (logits, loss, cache). Without ``targets_pieces`` the targets are the next tokens
        of the stream (the last token of a piece is scored against the next piece's first; the
        stream's last token is not scored). The cache is detached between pieces (``detach``):
        memory stays constant and gradients are truncated at piece boundaries."""
        cache = None

        def step(piece: Tensor, targets: Tensor | None) -> LMOutput:
            nonlocal cache
            out = self(piece, targets, cache=cache, use_cache=True)
            cache = out.cache.detach() if detach else out.cache
            return out

        if targets_pieces is not None:
            for piece, targets in zip(token_pieces, targets_pieces, strict=True):
                yield step(piece, targets)
            return
        it = iter(token_pieces)
        prev = next(it, None)
        for nxt in it:
            yield step(prev, torch.cat([prev[:, 1:], nxt[:, :1]], dim=1))
            prev = nxt
        if prev is not None:
            yield step(prev, F.pad(prev[:, 1:], (0, 1), value=-100))

    # ------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each atomically:
        written to a temporary file beside it, then renamed)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        _atomic_write(d / WEIGHTS_NAME, lambda p: save_model(self, str(p)))
        _atomic_write(d / CONFIG_NAME, lambda p: Path(p).write_text(self.config.to_json()))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device | None = None
                        ) -> TitansLM:
        d = Path(directory)
        config = ModelConfig.from_dict(json.loads((d / CONFIG_NAME).read_text()))
        model = cls(config)
        device = "cpu" if map_location is None else str(torch.device(map_location))
        load_model(model, str(d / WEIGHTS_NAME), strict=True, device=device)
        return model.to(device)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sample(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Next token ids ``[B]`` from logits ``[B, V]`` (greedy when temperature is 0)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > top_p  # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
