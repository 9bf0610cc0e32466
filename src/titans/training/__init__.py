"""Training: run config, the trainer loop, checkpoints, distributed setup."""

from .checkpoint import resolve_checkpoint
from .config import SIZE_DEFAULTS, TrainConfig, lr_at
from .trainer import Trainer, train

__all__ = ["SIZE_DEFAULTS", "TrainConfig", "Trainer", "lr_at", "resolve_checkpoint", "train"]
