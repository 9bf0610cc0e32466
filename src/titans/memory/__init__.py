"""Neural long-term memory as a layer: ``[B, T, d_model] → [B, T, d_model]``."""

from .config import NeuralMemoryConfig
from .neural_memory import NeuralMemory, NeuralMemoryCache

__all__ = ["NeuralMemory", "NeuralMemoryCache", "NeuralMemoryConfig"]
