"""codefill training tools: Gemma in torch, FIM transform, multi-file packing (see issue 7)."""
