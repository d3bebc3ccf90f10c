"""The Gemma 3 text decoder in torch (the architecture of the embedded Gemma 3 270M).

Module and parameter names are Hugging Face's (``model.layers.0.self_attn.q_norm.weight`` …), so
a state dict is the HF ``Gemma3ForCausalLM`` checkpoint layout and :func:`model.checkpoint.
save_pretrained` + ``codefill quantize`` turn it into a GGUF llama.cpp runs. What Gemma 3 adds to
Gemma 1 (:mod:`model.gemma`, whose RMSNorm, RoPE and MLP are reused here):

- QK-norm: an RMSNorm (``1 + w``, over ``head_dim``) on every query and key head, before RoPE;
- "sandwich" norms: the attention and MLP outputs are normalised again (``post_attention_
  layernorm``, ``post_feedforward_layernorm``) before they join the residual stream, and the MLP
  input has its own ``pre_feedforward_layernorm`` (Gemma 1's ``post_attention_layernorm`` played
  that role; the same name means something else here);
- local and global layers: sliding-window attention (a query sees the ``sliding_window`` most
  recent positions, itself included) everywhere except every ``sliding_window_pattern``-th layer
  (5 local : 1 global), each kind with its own RoPE base (local 10 000, global 1 000 000; linear
  RoPE scaling applies to the global layers only, and only the 4B and larger models use it);
- queries scaled by ``query_pre_attn_scalar ** -0.5`` (= head_dim for every size but the 27B);
- no attention soft-capping (Gemma 2 had it); an optional final-logit soft-cap (None in the
  published Gemma 3 configs).

Unchanged from Gemma 1: embeddings × √hidden, tied output embedding, tanh-GELU GeGLU, MQA/GQA,
rotate-half RoPE, float32 norms. ``position_ids`` / ``segment_ids`` work as in model/gemma.py.

The logits can be computed at selected positions only (``logits_at``): with a 262k vocabulary
the output projection of a 270M model costs more than all 18 layers (docs/adapter-training-notes.md),
and FIM training needs the loss on the middle span only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import check_attention_shape
from .gemma import IGNORE_INDEX, MLP, RMSNorm, apply_rope, rope_cos_sin

SLIDING, FULL = "sliding_attention", "full_attention"


@dataclass(frozen=True)
class Gemma3Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int = 32768
    rope_theta: float = 1_000_000.0
    """RoPE base of the global (full-attention) layers."""
    rope_local_base_freq: float = 10_000.0
    """RoPE base of the sliding-window layers."""
    rope_scaling_factor: float = 1.0
    """Linear RoPE scaling (positions / factor) of the global layers; 1 = none."""
    sliding_window: int | None = 512
    """None: every layer attends globally."""
    sliding_window_pattern: int = 6
    """Every n-th layer (n-1, 2n-1, …) is global, the others slide; ignored with layer_types."""
    layer_types: tuple[str, ...] | None = None
    """Explicit per-layer ``sliding_attention`` / ``full_attention`` (HF's newer configs)."""
    query_pre_attn_scalar: float | None = None
    """Queries are scaled by this ** -0.5; None = head_dim."""
    final_logit_softcapping: float | None = None
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    bos_token_id: int = 2
    eos_token_id: int = 1
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        check_attention_shape(self.num_attention_heads, self.num_key_value_heads, self.head_dim)
        if self.layer_types is not None and (
                len(self.layer_types) != self.num_hidden_layers
                or not set(self.layer_types) <= {SLIDING, FULL}):
            raise ValueError(f"layer_types must name {SLIDING!r} or {FULL!r} for each of the "
                             f"{self.num_hidden_layers} layers")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError("sliding_window must be positive (or None for no window)")

    def sliding_layers(self) -> tuple[bool, ...]:
        """Per layer: True if it attends through the sliding window."""
        if self.sliding_window is None:
            return (False,) * self.num_hidden_layers
        if self.layer_types is not None:
            return tuple(t == SLIDING for t in self.layer_types)
        n = self.sliding_window_pattern
        # Layers n-1, 2n-1, … are global: HF's (i + 1) % n and llama.cpp's i % n < n - 1.
        return tuple((i + 1) % n != 0 for i in range(self.num_hidden_layers))

    @property
    def query_scale(self) -> float:
        return float(self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def with_vocab(self, vocab_size: int) -> "Gemma3Config":
        return replace(self, vocab_size=vocab_size)

    def n_params(self) -> int:
        """Parameters with tied embeddings (the embedding matrix counted once)."""
        h, i, hd = self.hidden_size, self.intermediate_size, self.head_dim
        attn = h * hd * (2 * self.num_attention_heads + 2 * self.num_key_value_heads)
        per_layer = attn + 3 * h * i + 4 * h + 2 * hd  # 4 hidden norms, q_norm and k_norm
        return self.vocab_size * h + self.num_hidden_layers * per_layer + h

    def to_hf(self, name: str = "codefill-gemma3", torch_dtype: str = "float32"
              ) -> dict[str, Any]:
        """config.json as transformers writes it for Gemma3ForCausalLM (model_type gemma3_text)."""
        types = [SLIDING if s else FULL for s in self.sliding_layers()]
        scaling = ({"rope_type": "linear", "factor": self.rope_scaling_factor}
                   if self.rope_scaling_factor != 1.0 else None)
        return {
            "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
            "_name_or_path": name, "torch_dtype": torch_dtype,
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta, "rope_local_base_freq": self.rope_local_base_freq,
            "rope_scaling": scaling, "sliding_window": self.sliding_window,
            "sliding_window_pattern": self.sliding_window_pattern, "layer_types": types,
            "query_pre_attn_scalar": self.query_pre_attn_scalar or self.head_dim,
            "final_logit_softcapping": self.final_logit_softcapping,
            "attn_logit_softcapping": None, "hidden_activation": "gelu_pytorch_tanh",
            "rms_norm_eps": self.rms_norm_eps, "initializer_range": self.initializer_range,
            "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": True,
            "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id, "use_cache": True,
        }

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> "Gemma3Config":
        arch = (cfg.get("architectures") or ["?"])[0]
        if arch != "Gemma3ForCausalLM":
            raise ValueError(f"architecture {arch} is not Gemma 3 text (Gemma3ForCausalLM)")
        if cfg.get("attn_logit_softcapping") is not None:
            raise ValueError("attn_logit_softcapping is set; Gemma 3 has no attention soft-cap")
        if cfg.get("tie_word_embeddings", True) is False:
            raise ValueError("untied output embeddings are not supported")
        act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
        if act not in ("gelu_pytorch_tanh", "gelu_new"):
            raise ValueError(f"activation {act!r} is not Gemma's tanh GELU")
        scaling = cfg.get("rope_scaling") or {}
        kind = scaling.get("rope_type") or scaling.get("type") if scaling else None
        if scaling and kind != "linear":
            raise ValueError(f"rope_scaling {scaling!r}: only linear scaling is Gemma 3's")
        names = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                 "num_attention_heads", "num_key_value_heads", "head_dim",
                 "max_position_embeddings", "rope_theta", "rope_local_base_freq",
                 "query_pre_attn_scalar", "final_logit_softcapping", "rms_norm_eps",
                 "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id"}
        kw: dict[str, Any] = {k: cfg[k] for k in names if cfg.get(k) is not None}
        kw.setdefault("num_key_value_heads", cfg["num_attention_heads"])
        kw.setdefault("head_dim", 256)  # transformers' Gemma3TextConfig default
        kw["sliding_window"] = cfg.get("sliding_window")
        kw["sliding_window_pattern"] = int(cfg.get("sliding_window_pattern")
                                           or cfg.get("_sliding_window_pattern") or 6)
        if cfg.get("layer_types"):
            kw["layer_types"] = tuple(cfg["layer_types"])
        if scaling:
            kw["rope_scaling_factor"] = float(scaling["factor"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# google/gemma-3-270m as published (the embedded model's base; vocab_size from its tokenizer).
GEMMA3_270M = Gemma3Config(
    vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
    num_attention_heads=4, num_key_value_heads=1, head_dim=256, max_position_embeddings=32768,
    rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, sliding_window=512,
    sliding_window_pattern=6, query_pre_attn_scalar=256)


class Gemma3Attention(nn.Module):
    def __init__(self, cfg: Gemma3Config) -> None:
        super().__init__()
        self.nh, self.nkv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        h = cfg.hidden_size
        self.scale = cfg.query_scale
        self.q_proj = nn.Linear(h, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(h, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(h, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, h, bias=False)
        # One RMSNorm over head_dim shared by all heads (weights (hd,)), applied per head.
        self.q_norm = RMSNorm(self.hd, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(self.hd, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        # QK-norm before RoPE (HF and llama.cpp agree on the order); V is not normalised.
        q = self.q_norm(self.q_proj(x).view(B, T, self.nh, self.hd)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, self.nkv, self.hd)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)  # (B, nkv, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, nh|nkv, T, hd)
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.scale,
            enable_gqa=self.nkv != self.nh)  # (B, nh, T, hd)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.nh * self.hd))


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, cfg: Gemma3Config, sliding: bool) -> None:
        super().__init__()
        self.sliding = sliding
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.input_layernorm = RMSNorm(h, eps)
        self.self_attn = Gemma3Attention(cfg)
        self.post_attention_layernorm = RMSNorm(h, eps)
        self.pre_feedforward_layernorm = RMSNorm(h, eps)
        self.mlp = MLP(h, cfg.intermediate_size)
        self.post_feedforward_layernorm = RMSNorm(h, eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, T, h). Each block's output is normalised before the residual add.
        x = x + self.post_attention_layernorm(
            self.self_attn(self.input_layernorm(x), cos, sin, mask))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Gemma3Model(nn.Module):
    def __init__(self, cfg: Gemma3Config) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Gemma3DecoderLayer(cfg, s) for s in cfg.sliding_layers())
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


def gemma3_mask(T: int, segment_ids: torch.Tensor | None, window: int | None,
                device: torch.device) -> torch.Tensor | None:
    """(B|1, 1, T, T) boolean (True = attend): causal, within the segment, within the window.

    None when plain causal attention is exact (no segments, no window that can bite), so SDPA
    can take its ``is_causal`` path. The window is measured in row indices: inside one packed
    example they differ exactly as the positions do, and across examples the segment mask
    already blocks attention. A query at i sees keys j with i - window < j <= i (llama.cpp
    masks p1 - p0 >= n_swa; HF keeps kv_idx > q_idx - sliding_window).
    """
    bite = window is not None and T > window
    if segment_ids is None and not bite:
        return None
    i = torch.arange(T, device=device)
    allowed = i[None, :] <= i[:, None]  # (T, T): key index ≤ query index
    if bite:
        allowed = allowed & (i[:, None] - i[None, :] < window)
    allowed = allowed[None]  # (1, T, T)
    if segment_ids is not None:
        allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])  # (B, T, T)
    return allowed[:, None]


class Gemma3ForCausalLM(nn.Module):
    def __init__(self, cfg: Gemma3Config) -> None:
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("vocab_size must be set (from the tokenizer) before building")
        self.config = cfg
        self.model = Gemma3Model(cfg)
        self.reset_parameters()

    def reset_parameters(self, seed: int | None = None) -> None:
        """HF's init: N(0, initializer_range) for matrices and embeddings, norms at 0 (scale 1)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for p in self.parameters():
            if p.is_meta:
                continue  # built on the meta device for loading: the weights come later
            with torch.no_grad():
                if p.dim() == 1:
                    p.zero_()
                else:
                    p.normal_(0.0, self.config.initializer_range, generator=gen)

    def hidden_states(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                      segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final-normed hidden states (B, T, h): what the tied output projection reads."""
        cfg = self.config
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        # Two RoPE tables (B, 1, T, hd): global layers with the long base (and linear scaling,
        # positions / factor), sliding layers with the short base and no scaling.
        pos = position_ids.float()
        cos_g, sin_g = rope_cos_sin(pos / cfg.rope_scaling_factor, cfg.head_dim, cfg.rope_theta)
        cos_l, sin_l = rope_cos_sin(pos, cfg.head_dim, cfg.rope_local_base_freq)
        mask_g = gemma3_mask(T, segment_ids, None, input_ids.device)
        mask_l = gemma3_mask(T, segment_ids, cfg.sliding_window, input_ids.device)
        x = self.model.embed_tokens(input_ids)  # (B, T, h)
        # √hidden rounded to the activations' dtype, as HF's Gemma3TextScaledWordEmbedding.
        x = x * torch.tensor(math.sqrt(cfg.hidden_size), dtype=x.dtype)
        for layer in self.model.layers:
            if layer.sliding:
                x = layer(x, cos_l, sin_l, mask_l)
            else:
                x = layer(x, cos_g, sin_g, mask_g)
        return self.model.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output projection (..., h) → (..., vocab) in float32, soft-capped if configured."""
        out = F.linear(hidden, self.model.embed_tokens.weight).float()
        cap = self.config.final_logit_softcapping
        return torch.tanh(out / cap) * cap if cap else out

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None,
                logits_at: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) for ``input_ids`` (B, T); with ``logits_at`` (bool (B, T)) only
        at the selected positions, (N, vocab) in row-major order of the selection."""
        h = self.hidden_states(input_ids, position_ids, segment_ids)
        return self.logits(h if logits_at is None else h[logits_at])


def selected_lm_loss(model: Gemma3ForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor,
                     position_ids: torch.Tensor | None = None,
                     segment_ids: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of cross-entropies, count) over the positions whose label is not IGNORE_INDEX,
    computing the output projection only there (e.g. the middle span of FIM examples).

    Equal to ``model.gemma.lm_loss(model(input_ids), labels)`` but the (T × vocab) logits of
    the unlabelled positions are never formed, which is most of the cost at a 262k vocabulary.
    """
    keep = labels != IGNORE_INDEX  # (B, T)
    logits = model(input_ids, position_ids, segment_ids, logits_at=keep)  # (N, vocab)
    loss = F.cross_entropy(logits, labels[keep], reduction="sum")
    return loss, keep.sum()
