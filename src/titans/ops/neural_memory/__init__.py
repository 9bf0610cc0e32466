"""The neural long-term memory op: ``neural_memory`` (fast) and its token-by-token reference."""

from .api import neural_memory
from .reference import memory_mlp, neural_memory_reference
from .state import ACTIVATIONS, MemoryState

__all__ = ["ACTIVATIONS", "MemoryState", "memory_mlp", "neural_memory", "neural_memory_reference"]
