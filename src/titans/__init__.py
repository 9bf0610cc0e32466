"""titans: neural long-term memory that learns at test time (Behrouz, Zhong, Mirrokni, 2025).

Layers of the package: ``titans.ops`` (the memory op and its kernels) → ``titans.memory``
(the ``NeuralMemory`` layer) → ``titans.models`` (MAC, MAG, MAL, LMM, Transformer++) →
``titans.training`` / ``titans.evaluation`` / ``titans.cli``.
"""

from .memory import NeuralMemory, NeuralMemoryCache, NeuralMemoryConfig
from .models import ModelConfig, TitansLM, get_config
from .ops import MemoryState, neural_memory, neural_memory_reference

__version__ = "0.1.0"
__all__ = ["MemoryState", "ModelConfig", "NeuralMemory", "NeuralMemoryCache", "NeuralMemoryConfig",
           "TitansLM", "get_config", "neural_memory", "neural_memory_reference"]
