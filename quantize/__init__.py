"""codefill quantize: checkpoint → GGUF conversion and quantization (docs/quantize.md)."""
