"""FIM templates, their detection from a GGUF, and token-budgeted prompt assembly."""

from .assemble import Budget, ContextFile, Prompt, assemble
from .detect import Detection, choose_template, detect_template
from .templates import TEMPLATES, FimTemplate, Order, get_template

__all__ = ["Budget", "ContextFile", "Prompt", "assemble", "Detection", "choose_template",
           "detect_template", "TEMPLATES", "FimTemplate", "Order", "get_template"]
