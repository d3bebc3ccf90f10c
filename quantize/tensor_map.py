"""Hugging Face tensor names → GGUF tensor names, per architecture, with expected shapes.

Tables, not if-chains: each architecture lists the per-layer suffixes it has. A name that no
table knows is refused by name (silently dropping a tensor would produce a model that loads but
computes something else). Shapes are checked against config.json before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import gguf

from .errors import QuantizeError
from .hf_config import ArchSpec, HParams

T = gguf.MODEL_TENSOR

GLOBAL_TENSORS: dict[str, T] = {
    "model.embed_tokens.weight": T.TOKEN_EMBD,
    "model.norm.weight": T.OUTPUT_NORM,
    "lm_head.weight": T.OUTPUT,
}

_COMMON_LAYER: dict[str, T] = {
    "input_layernorm.weight": T.ATTN_NORM,
    "self_attn.q_proj.weight": T.ATTN_Q,
    "self_attn.k_proj.weight": T.ATTN_K,
    "self_attn.v_proj.weight": T.ATTN_V,
    "self_attn.o_proj.weight": T.ATTN_OUT,
    "mlp.gate_proj.weight": T.FFN_GATE,
    "mlp.up_proj.weight": T.FFN_UP,
    "mlp.down_proj.weight": T.FFN_DOWN,
}

# Gemma 1's post_attention_layernorm is the pre-FFN norm; from Gemma 2 on it normalises the
# attention output and pre_feedforward_layernorm takes the pre-FFN role.
_GEMMA2_LAYER: dict[str, T] = {
    **_COMMON_LAYER,
    "post_attention_layernorm.weight": T.ATTN_POST_NORM,
    "pre_feedforward_layernorm.weight": T.FFN_PRE_NORM,
    "post_feedforward_layernorm.weight": T.FFN_POST_NORM,
}

LAYER_TENSORS: dict[gguf.MODEL_ARCH, dict[str, T]] = {
    gguf.MODEL_ARCH.GEMMA: {**_COMMON_LAYER, "post_attention_layernorm.weight": T.FFN_NORM},
    gguf.MODEL_ARCH.GEMMA2: _GEMMA2_LAYER,
    gguf.MODEL_ARCH.GEMMA3: {**_GEMMA2_LAYER, "self_attn.q_norm.weight": T.ATTN_Q_NORM,
                             "self_attn.k_norm.weight": T.ATTN_K_NORM},
}

# Gemma's RMSNorm computes x * (1 + w) and llama.cpp's computes x * w: store 1 + w.
SHIFTED_NORMS: frozenset[T] = frozenset({T.ATTN_NORM, T.FFN_NORM, T.FFN_PRE_NORM, T.ATTN_POST_NORM,
                                         T.FFN_POST_NORM, T.OUTPUT_NORM, T.ATTN_Q_NORM,
                                         T.ATTN_K_NORM})

# Expected shapes in Hugging Face (torch, row-major: out_features × in_features) order.
SHAPES: dict[T, Callable[[HParams], tuple[int, ...]]] = {
    T.TOKEN_EMBD: lambda h: (h.vocab_size, h.hidden_size),
    T.OUTPUT: lambda h: (h.vocab_size, h.hidden_size),
    T.OUTPUT_NORM: lambda h: (h.hidden_size,),
    T.ATTN_NORM: lambda h: (h.hidden_size,),
    T.FFN_NORM: lambda h: (h.hidden_size,),
    T.FFN_PRE_NORM: lambda h: (h.hidden_size,),
    T.ATTN_POST_NORM: lambda h: (h.hidden_size,),
    T.FFN_POST_NORM: lambda h: (h.hidden_size,),
    T.ATTN_Q_NORM: lambda h: (h.head_dim,),
    T.ATTN_K_NORM: lambda h: (h.head_dim,),
    T.ATTN_Q: lambda h: (h.n_heads * h.head_dim, h.hidden_size),
    T.ATTN_K: lambda h: (h.n_kv_heads * h.head_dim, h.hidden_size),
    T.ATTN_V: lambda h: (h.n_kv_heads * h.head_dim, h.hidden_size),
    T.ATTN_OUT: lambda h: (h.hidden_size, h.n_heads * h.head_dim),
    T.FFN_GATE: lambda h: (h.intermediate_size, h.hidden_size),
    T.FFN_UP: lambda h: (h.intermediate_size, h.hidden_size),
    T.FFN_DOWN: lambda h: (h.hidden_size, h.intermediate_size),
}

_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")


@dataclass(frozen=True)
class MappedTensor:
    hf_name: str
    gguf_name: str
    kind: T
    layer: int | None
    shape: tuple[int, ...]
    """Expected (and, after checking, actual) shape in Hugging Face order."""
    norm_shift: float
    """Added to every element on the way out (Gemma's 1 + w norms)."""


def map_tensor(spec: ArchSpec, hp: HParams, hf_name: str) -> MappedTensor:
    """Map one checkpoint tensor; refuse names the architecture does not have."""
    kind: T | None = GLOBAL_TENSORS.get(hf_name)
    layer: int | None = None
    if kind is None and (m := _LAYER_RE.fullmatch(hf_name)):
        layer = int(m.group(1))
        kind = LAYER_TENSORS[spec.gguf_arch].get(m.group(2))
        if kind is not None and layer >= hp.n_layers:
            raise QuantizeError(f"tensor {hf_name!r} belongs to layer {layer}, but config.json "
                                f"declares num_hidden_layers = {hp.n_layers}",
                                "use the config.json that was published with the checkpoint")
    if kind is None:
        raise QuantizeError(f"unknown tensor {hf_name!r} for {spec.hf_name}",
                            "this converter maps only the tensors of "
                            f"{spec.label}; the checkpoint is of another or a modified architecture")
    template = gguf.TENSOR_NAMES[kind]
    gguf_name = (template.format(bid=layer) if layer is not None else template) + ".weight"
    shift = 1.0 if kind in SHIFTED_NORMS else 0.0
    return MappedTensor(hf_name, gguf_name, kind, layer, SHAPES[kind](hp), shift)


def expected_names(spec: ArchSpec, hp: HParams) -> list[str]:
    """Every tensor a complete checkpoint of this architecture must contain (lm_head aside)."""
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(hp.n_layers):
        names += [f"model.layers.{i}.{suffix}" for suffix in LAYER_TENSORS[spec.gguf_arch]]
    return names
