"""Functional ops: the neural memory and its references."""

from .neural_memory import ACTIVATIONS, MemoryState, memory_mlp, neural_memory, neural_memory_reference

__all__ = ["ACTIVATIONS", "MemoryState", "memory_mlp", "neural_memory", "neural_memory_reference"]
