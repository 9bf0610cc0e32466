"""titans: neural long-term memory that learns at test time (Behrouz, Zhong, Mirrokni, 2025)."""

from .memory import NeuralMemory, NeuralMemoryCache, NeuralMemoryConfig
from .ops import MemoryState, neural_memory, neural_memory_reference

__version__ = "0.1.0"
__all__ = ["MemoryState", "NeuralMemory", "NeuralMemoryCache", "NeuralMemoryConfig", "neural_memory",
           "neural_memory_reference"]
