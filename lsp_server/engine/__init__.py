"""Generation engines. The in-process llama.cpp engine lives in llama_engine."""

from .types import (EngineCounters, EngineError, GenerationRequest, GenerationStats, StopReason,
                    TokenEvent, TokenStream)

__all__ = ["EngineCounters", "EngineError", "GenerationRequest", "GenerationStats", "StopReason",
           "TokenEvent", "TokenStream"]
