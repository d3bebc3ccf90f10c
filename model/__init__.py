"""codefill training tools: Gemma in torch, FIM transform, multi-file packing (docs/training.md)."""
