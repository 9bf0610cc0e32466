"""Process-group setup under torchrun and model wrapping (DDP or FSDP2)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def setup(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else single process."""
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def block_modules(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model (the first ModuleList found), FSDP2's sharding units."""
    for m in model.modules():
        if isinstance(m, nn.ModuleList) and len(m) > 0:
            return list(m)
    return []


def wrap(model: nn.Module, info: DistInfo, parallel: str) -> nn.Module:
    """DDP or FSDP2 (``fully_shard`` on each block, then the root) when running distributed."""
    if not info.enabled:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in block_modules(model):
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {parallel!r}")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP / torch.compile wrappers (FSDP2 shards in place)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def is_fsdp(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover
        return False
    return isinstance(unwrap(model), FSDPModule)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value
