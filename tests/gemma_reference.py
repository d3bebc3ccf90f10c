"""A float64 numpy forward pass of Hugging Face Gemma 1/2/3 (text), straight from the HF
tensors and config.json: the independent reference the interop check compares llama.cpp's
logits against. It follows transformers' modeling_gemma*.py (RMSNorm x·(1+w), embeddings scaled
by √hidden, rotate-half RoPE, GQA, tanh-GELU gated MLP, Gemma 2 soft-capping and sliding
windows, Gemma 3 q/k norms and local RoPE base), not the converter's code or names.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np


def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    # x: (..., d), w: (d,)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (1.0 + w)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _rope(x: np.ndarray, pos: np.ndarray, theta: float, factor: float = 1.0) -> np.ndarray:
    # x: (T, heads, hd); rotate-half layout: the two halves of each head form the pairs.
    hd = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)  # (hd/2,)
    ang = (pos[:, None] / factor) * inv[None, :]  # (T, hd/2)
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)[:, None, :]  # (T, 1, hd)
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)[:, None, :]
    half = hd // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def gemma_logits(cfg: Mapping[str, Any], weights: Mapping[str, np.ndarray],
                 tokens: Sequence[int]) -> np.ndarray:
    """Logits (len(tokens), vocab) of the causal LM for one sequence starting at position 0."""
    arch = cfg["architectures"][0]
    gen = {"GemmaForCausalLM": 1, "Gemma2ForCausalLM": 2, "Gemma3ForCausalLM": 3}[arch]
    W = lambda name: np.asarray(weights[name], dtype=np.float64)  # noqa: E731
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv, hd = cfg.get("num_key_value_heads", nh), cfg.get("head_dim", h // nh)
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    scale = (cfg.get("query_pre_attn_scalar") or hd) ** -0.5 if gen > 1 else hd ** -0.5
    attn_cap = cfg.get("attn_logit_softcapping") if gen == 2 else None
    final_cap = cfg.get("final_logit_softcapping") if gen > 1 else None
    window = cfg.get("sliding_window") if gen > 1 else None
    n_layers = cfg["num_hidden_layers"]
    if gen == 2:
        sliding = [i % 2 == 0 for i in range(n_layers)]
    elif gen == 3 and window:
        every = cfg.get("sliding_window_pattern") or 6
        sliding = [(i + 1) % every != 0 for i in range(n_layers)]
    else:
        sliding = [False] * n_layers
    if cfg.get("layer_types"):
        sliding = [t == "sliding_attention" for t in cfg["layer_types"]]
    scaling = cfg.get("rope_scaling") or {}
    factor = float(scaling.get("factor", 1.0)) if scaling else 1.0

    ids = np.asarray(tokens)
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    emb = W("model.embed_tokens.weight")  # (vocab, h)
    x = emb[ids] * np.float64(np.float32(math.sqrt(h)))  # (T, h); HF rounds √h to the dtype
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(n_layers):
        p = f"model.layers.{i}."
        r = x
        a = _rms_norm(x, W(p + "input_layernorm.weight"), eps)
        q = (a @ W(p + "self_attn.q_proj.weight").T).reshape(T, nh, hd)
        k = (a @ W(p + "self_attn.k_proj.weight").T).reshape(T, nkv, hd)
        v = (a @ W(p + "self_attn.v_proj.weight").T).reshape(T, nkv, hd)
        if gen == 3:
            q = _rms_norm(q, W(p + "self_attn.q_norm.weight"), eps)
            k = _rms_norm(k, W(p + "self_attn.k_norm.weight"), eps)
        if gen == 3 and sliding[i]:
            q = _rope(q, pos, cfg.get("rope_local_base_freq", 10000.0))
            k = _rope(k, pos, cfg.get("rope_local_base_freq", 10000.0))
        else:
            q = _rope(q, pos, theta, factor if gen == 3 else 1.0)
            k = _rope(k, pos, theta, factor if gen == 3 else 1.0)
        rep = nh // nkv
        k = np.repeat(k, rep, axis=1)  # (T, nh, hd)
        v = np.repeat(v, rep, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) * scale  # (nh, T, T)
        if attn_cap:
            s = np.tanh(s / attn_cap) * attn_cap
        mask = causal.copy()
        if sliding[i] and window:
            mask &= (pos[:, None] - pos[None, :]) < window
        s = np.where(mask[None], s, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", s, v).reshape(T, nh * hd)
        o = o @ W(p + "self_attn.o_proj.weight").T  # (T, h)
        if gen == 1:
            x = r + o
            m_in = _rms_norm(x, W(p + "post_attention_layernorm.weight"), eps)
        else:
            x = r + _rms_norm(o, W(p + "post_attention_layernorm.weight"), eps)
            m_in = _rms_norm(x, W(p + "pre_feedforward_layernorm.weight"), eps)
        g = m_in @ W(p + "mlp.gate_proj.weight").T
        u = m_in @ W(p + "mlp.up_proj.weight").T
        m = (_gelu_tanh(g) * u) @ W(p + "mlp.down_proj.weight").T
        if gen > 1:
            m = _rms_norm(m, W(p + "post_feedforward_layernorm.weight"), eps)
        x = x + m
    x = _rms_norm(x, W("model.norm.weight"), eps)
    head = W("lm_head.weight") if "lm_head.weight" in weights and not cfg.get(
        "tie_word_embeddings", True) else emb
    logits = x @ head.T  # (T, vocab)
    if final_cap:
        logits = np.tanh(logits / final_cap) * final_cap
    return logits
