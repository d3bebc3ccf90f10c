"""Gemma (v1) hyperparameters: named configs and the Hugging Face ``config.json`` mapping.

``codegemma-2b`` holds the published CodeGemma 2B dimensions; the small ones are for tests and
laptop-scale training. The HF config written on save starts from the published CodeGemma 2B
config.json (:data:`CODEGEMMA_2B_CONFIG`) with the dimensions overridden, so the keys are
exactly the ones ``codefill quantize`` reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# config.json of google/codegemma-2b as published; a saved config overrides the dimensions.
CODEGEMMA_2B_CONFIG: dict[str, Any] = {
    "architectures": ["GemmaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": None,
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 16384,
    "max_position_embeddings": 8192,
    "model_type": "gemma",
    "num_attention_heads": 8,
    "num_hidden_layers": 18,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.39.0.dev0",
    "use_cache": True,
    "vocab_size": 256000,
}


def check_attention_shape(heads: int, kv_heads: int, head_dim: int) -> None:
    """Shapes every Gemma attention needs: whole query groups per KV head, RoPE on pairs."""
    if heads % kv_heads:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    if head_dim % 2:
        raise ValueError("head_dim must be even (RoPE rotates pairs)")


@dataclass(frozen=True)
class GemmaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int = 8192
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    bos_token_id: int = 2
    eos_token_id: int = 1
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        check_attention_shape(self.num_attention_heads, self.num_key_value_heads, self.head_dim)

    def with_vocab(self, vocab_size: int) -> "GemmaConfig":
        return replace(self, vocab_size=vocab_size)

    def n_params(self) -> int:
        """Parameters with tied embeddings (the embedding matrix counted once)."""
        h, i, hd = self.hidden_size, self.intermediate_size, self.head_dim
        attn = h * hd * (2 * self.num_attention_heads + 2 * self.num_key_value_heads)
        per_layer = attn + 3 * h * i + 2 * h
        return self.vocab_size * h + self.num_hidden_layers * per_layer + h

    def to_hf(self, name: str = "codefill-gemma", torch_dtype: str = "float32") -> dict[str, Any]:
        """config.json as Hugging Face transformers writes it for GemmaForCausalLM."""
        cfg = dict(CODEGEMMA_2B_CONFIG)
        cfg.update({f.name: getattr(self, f.name) for f in fields(self)})
        cfg["hidden_act"] = "gelu_pytorch_tanh"
        cfg["torch_dtype"] = torch_dtype
        cfg["_name_or_path"] = name
        cfg["tie_word_embeddings"] = True
        return cfg

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> "GemmaConfig":
        arch = (cfg.get("architectures") or ["?"])[0]
        if arch != "GemmaForCausalLM":
            raise ValueError(f"architecture {arch} is not Gemma 1 (GemmaForCausalLM)")
        if cfg.get("tie_word_embeddings", True) is False:
            raise ValueError("untied output embeddings are not Gemma 1's layout")
        act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
        if act not in ("gelu", "gelu_pytorch_tanh", "gelu_new"):
            raise ValueError(f"activation {act!r} is not Gemma's tanh GELU")
        nh = int(cfg["num_attention_heads"])
        kw: dict[str, Any] = {f.name: cfg[f.name] for f in fields(cls) if cfg.get(f.name) is not None}
        kw.setdefault("num_key_value_heads", nh)
        kw.setdefault("head_dim", int(cfg["hidden_size"]) // nh)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# vocab_size 0: taken from the tokenizer when the model is built.
CONFIGS: dict[str, GemmaConfig] = {
    # Tests: CodeGemma's shape in miniature (multi-query attention, head_dim > hidden/heads).
    "tiny": GemmaConfig(vocab_size=0, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                        head_dim=32, max_position_embeddings=1024),
    # Laptop-scale from-scratch training (~3.5M parameters with a 4k vocabulary).
    "small": GemmaConfig(vocab_size=0, hidden_size=256, intermediate_size=1024,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
                         head_dim=64, max_position_embeddings=2048),
    # google/codegemma-2b as published (2.5B parameters with the 256k vocabulary).
    "codegemma-2b": GemmaConfig(vocab_size=256000, hidden_size=2048, intermediate_size=16384,
                                num_hidden_layers=18, num_attention_heads=8,
                                num_key_value_heads=1, head_dim=256,
                                max_position_embeddings=8192, rope_theta=10000.0),
}


def named_config(name: str) -> GemmaConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}") from None

