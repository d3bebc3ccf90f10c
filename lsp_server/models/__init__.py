"""Model files: resolution of the embedded default and GGUF metadata."""

from .gguf_info import ModelInfo, read_model_info
from .paths import cache_dir, models_dir
from .resolve import available_models, embedded_model_path, resolve_model

__all__ = ["ModelInfo", "read_model_info", "available_models", "cache_dir",
           "embedded_model_path", "models_dir", "resolve_model"]
