"""Atomic checkpoints that load under any world size.

A checkpoint is a folder ``<out_dir>/checkpoints/step-XXXXXXX`` holding

* ``config.json`` + ``model.safetensors``: the model, loadable by ``TitansLM.from_pretrained``;
* tokenizer files (``tokenizer_config.json`` and, for BPE, ``tokenizer.json``);
* ``optimizer.pt``: AdamW state keyed by parameter name (world-size and wrapper independent);
* ``trainer_state.json``: step, tokens seen, sampler position, the training config;
* ``rng.pt``: the CPU / CUDA / numpy / python RNG states of rank 0.

It is written into a temporary folder and renamed into place, then ``<out_dir>/checkpoints/latest``
(a one-line file naming the folder) is replaced atomically, so a crash leaves the previous one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model
from torch import nn

from titans.memory.neural_memory import upgrade_unfused_qkv, upgrade_unfused_qkv_optimizer

from .distributed import is_fsdp, unwrap

LATEST = "latest"


def _full_model_state(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """Gathered full weights under FSDP (collective); None otherwise (the module is saved as is)."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return None


def _param_order(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the optimizer's parameters in its state-dict index order (groups concatenated)."""
    name_of = {id(p): n for n, p in unwrap(model).named_parameters()}
    return [name_of[id(p)] for g in optimizer.param_groups for p in g["params"]]


def _optimizer_state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    sd = optimizer.state_dict()
    names = _param_order(model, optimizer)
    state = {names[i]: {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in s.items()}
             for i, s in sd["state"].items()}
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in sd["param_groups"]]
    return {"state": state, "param_groups": groups}


def _load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, sd: dict) -> None:
    sd = upgrade_unfused_qkv_optimizer(sd)  # runs saved before the memory's q/k/v were fused
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, sd, options=StateDictOptions(full_state_dict=True))
        return
    index = {n: i for i, n in enumerate(_param_order(model, optimizer))}
    missing = sorted(set(sd["state"]) - set(index))
    if missing:
        raise ValueError(f"checkpoint optimizer state has parameters this model lacks: {missing[:5]}")
    state = {index[n]: s for n, s in sd["state"].items()}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in sd["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    tokenizer, trainer_state: dict, is_main: bool, keep: int = 2) -> Path:
    """Write ``step-XXXXXXX`` atomically (collective under FSDP: every rank must call it)."""
    weights = _full_model_state(model)
    optim = _optimizer_state_by_name(model, optimizer)
    root = Path(out_dir) / "checkpoints"
    final = root / f"step-{step:07d}"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        bare = unwrap(model)
        if weights is not None:  # FSDP: materialise the gathered weights in a CPU copy
            bare = type(bare)(bare.config)
            bare.load_state_dict(weights)
        bare.save_pretrained(tmp)  # config.json + model.safetensors (tied weights stored once)
        tokenizer.save(tmp)
        torch.save(optim, tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer = root / f".{LATEST}.tmp"
        pointer.write_text(final.name + "\n")
        os.replace(pointer, root / LATEST)
        old = sorted(p for p in root.glob("step-*") if p.is_dir())
        for p in old[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from itself, a run folder, or a ``checkpoints`` folder (its latest)."""
    p = Path(path)
    for candidate in (p, p / "checkpoints"):
        if (candidate / "model.safetensors").exists():
            return candidate
        if (candidate / LATEST).exists():
            return candidate / (candidate / LATEST).read_text().strip()
    raise ValueError(f"no checkpoint at {str(p)!r} (expected a checkpoint folder with model.safetensors, "
                     "or a run folder with checkpoints/latest)")


def load_weights(model: nn.Module, ckpt: Path) -> None:
    """Load ``model.safetensors`` into the (possibly wrapped or sharded) model."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, upgrade_unfused_qkv(load_file(str(ckpt / "model.safetensors"))),
                             options=StateDictOptions(full_state_dict=True, strict=False))
        return
    load_model(unwrap(model), str(ckpt / "model.safetensors"), strict=True)


def load_training_state(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore optimizer and RNG; returns ``trainer_state.json``."""
    _load_optimizer_state(model, optimizer, torch.load(ckpt / "optimizer.pt", weights_only=False))
    set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
    return json.loads((ckpt / "trainer_state.json").read_text())
