"""codefill quantize: checkpoint → GGUF conversion and quantization (see issue 6)."""
