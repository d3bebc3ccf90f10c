"""The Gemma (v1) decoder in torch: the architecture CodeGemma 2B uses.

Module and parameter names are Hugging Face's (``model.layers.0.self_attn.q_proj.weight`` …), so
a state dict is the HF checkpoint layout as is (see :mod:`model.checkpoint`). Quirks that set Gemma
apart from Llama, each of which the numpy reference (``tests/gemma_reference.py``) checks:
RMSNorm scales by ``1 + w`` (weights stored around 0) and runs in float32; embeddings are
multiplied by √hidden; the MLP is GeGLU with the tanh GELU; multi-query/grouped attention with
``head_dim`` independent of ``hidden/heads``; tied input/output embeddings.

Packed rows: ``position_ids`` restart at 0 for each example and ``segment_ids`` stop attention
across examples, so a row of several packed examples computes what each would compute alone
(what the daemon's prompts look like at inference time: one example from position 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GemmaConfig

IGNORE_INDEX = -100


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        # Gemma stores w around 0 and scales by (1 + w): zeros = identity scale at init.
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., dim). In float32 even under bf16 autocast, as HF Gemma does: the mean of
        # squares of ~2k activations loses too much in bf16.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * (1.0 + self.weight.float())).type_as(x)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (B, 1, T, head_dim) for rotate-half RoPE, in float32."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=position_ids.device,
                                       dtype=torch.float32) / head_dim)  # (hd/2,)
    ang = position_ids.float()[..., None] * inv  # (B, T, hd/2)
    ang = torch.cat([ang, ang], dim=-1)  # (B, T, hd): both halves share the frequencies
    return ang.cos()[:, None], ang.sin()[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, heads, T, hd); pairs are (i, i + hd/2) ("rotate half", HF's and llama.cpp's NEOX).
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rot.float() * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: GemmaConfig) -> None:
        super().__init__()
        self.nh, self.nkv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(h, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(h, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # enable_gqa: each group of nh/nkv query heads shares one K/V head without copying it.
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.hd ** -0.5,
            enable_gqa=self.nkv != self.nh)  # (B, nh, T, hd)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.nh * self.hd))


class MLP(nn.Module):
    """Gemma's feed-forward block (the same in Gemma 1, 2 and 3)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GeGLU: gelu_tanh(gate) ⊙ up, the "gelu_pytorch_tanh" activation of Gemma's config.
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: GemmaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        # Pre-norm residual blocks (Gemma 1 has no post-norms; Gemma 2/3 add them).
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class GemmaModel(nn.Module):
    def __init__(self, cfg: GemmaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


def attention_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) boolean: causal and within the same packed example (True = attend)."""
    T = segment_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
    return (same & causal)[:, None]


class GemmaForCausalLM(nn.Module):
    def __init__(self, cfg: GemmaConfig) -> None:
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("vocab_size must be set (from the tokenizer) before building")
        self.config = cfg
        self.model = GemmaModel(cfg)
        self.reset_parameters()

    def reset_parameters(self, seed: int | None = None) -> None:
        """HF's init: N(0, initializer_range) for matrices and embeddings, norms at 0 (scale 1)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            with torch.no_grad():
                if p.dim() == 1:
                    p.zero_()
                else:
                    p.normal_(0.0, self.config.initializer_range, generator=gen)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) in float32 for ``input_ids`` (B, T)."""
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        cos, sin = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta)
        mask = attention_mask(segment_ids) if segment_ids is not None else None
        x = self.model.embed_tokens(input_ids)  # (B, T, h)
        # HF multiplies by √hidden rounded to the activations' dtype (a 0-dim tensor).
        x = x * torch.tensor(math.sqrt(self.config.hidden_size), dtype=x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        # Tied output embeddings: the head is the embedding matrix (vocab, h).
        return F.linear(x, self.model.embed_tokens.weight).float()


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of next-token cross-entropies, number of predicted tokens).

    ``labels`` (B, T) are already shifted (label[t] is the token after input[t]); IGNORE_INDEX
    marks padding. Sums, not means, so that gradient accumulation and DDP can divide by the
    global token count and give the same update however the batch is split.
    """
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, (labels != IGNORE_INDEX).sum()
