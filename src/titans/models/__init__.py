"""Language models: MAC, MAG, MAL, LMM (Titans §4) and a Transformer++ baseline."""

from .config import ABLATIONS, PRESETS, VARIANTS, ModelConfig, count_parameters, get_config
from .lm import LMCache, LMOutput, TitansLM

__all__ = ["ABLATIONS", "LMCache", "LMOutput", "ModelConfig", "PRESETS", "TitansLM", "VARIANTS",
           "count_parameters", "get_config"]
