"""config.json of a Hugging Face checkpoint → the hyperparameters GGUF metadata needs.

A registry maps each supported ``architectures`` name to an :class:`ArchSpec`: the llama.cpp
architecture, how to read its extra hyperparameters and how to write them. An architecture not
in the registry is refused by name with the supported list.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gguf

from .errors import QuantizeError

# llama.cpp's Gemma graphs use the tanh approximation of GELU; these are the HF names for it (HF
# maps Gemma's legacy "gelu" to the approximation too).
GELU_TANH_NAMES: frozenset[str] = frozenset({"gelu", "gelu_pytorch_tanh", "gelu_new"})


@dataclass
class HParams:
    """What the converter needs from config.json, validated."""

    hf_architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    context_length: int
    rms_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    name: str
    torch_dtype: str
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    # Gemma 2 / 3
    sliding_window: int | None = None
    swa_layers: list[bool] = field(default_factory=list)
    """Per layer: True where the layer uses sliding-window attention."""
    attn_softcap: float | None = None
    final_softcap: float | None = None
    rope_local_theta: float | None = None
    rope_linear_factor: float | None = None


Reader = Callable[[dict[str, Any], HParams], None]
Writer = Callable[[gguf.GGUFWriter, HParams], None]


@dataclass(frozen=True)
class ArchSpec:
    hf_name: str
    gguf_arch: gguf.MODEL_ARCH
    label: str
    read_extra: Reader
    write_extra: Writer
    supports_untied_output: bool
    """Whether llama.cpp's graph for this architecture reads a separate output.weight."""

    @property
    def gguf_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]


def _cfg_error(key: str, problem: str) -> QuantizeError:
    return QuantizeError(f"config.json: {key} {problem}",
                         "use the config.json that was published with the checkpoint")


def _int(cfg: dict[str, Any], key: str, default: int | None = None) -> int:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise _cfg_error(key, "is missing" if v is None else f"must be a positive integer, not {v!r}")
    return v


def _float(cfg: dict[str, Any], key: str, default: float | None = None) -> float:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _cfg_error(key, "is missing" if v is None else f"must be a positive number, not {v!r}")
    return float(v)


def _opt_float(cfg: dict[str, Any], key: str) -> float | None:
    return None if cfg.get(key) is None else _float(cfg, key)


def _opt_id(cfg: dict[str, Any], key: str) -> int | None:
    v = cfg.get(key)
    if isinstance(v, list):  # some configs list several EOS ids; the first is the primary one
        v = v[0] if v else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _check_activation(cfg: dict[str, Any], _: HParams) -> None:
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in GELU_TANH_NAMES:
        raise _cfg_error("hidden_activation", f"is {act!r}; llama.cpp's Gemma runs "
                         f"{' / '.join(sorted(GELU_TANH_NAMES))} only")


def _swa_layers(cfg: dict[str, Any], hp: HParams, every: int) -> list[bool]:
    """Which layers use the sliding window: from ``layer_types`` when given, else the
    architecture's fixed pattern (Gemma 2: even layers; Gemma 3: all but every 6th)."""
    types = cfg.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != hp.n_layers or not set(types) <= {
                "sliding_attention", "full_attention"}:
            raise _cfg_error("layer_types", f"must list 'sliding_attention' / 'full_attention' "
                             f"for each of the {hp.n_layers} layers")
        return [t == "sliding_attention" for t in types]
    every = int(cfg.get("sliding_window_pattern") or every)
    if every == 2:
        return [i % 2 == 0 for i in range(hp.n_layers)]
    return [(i + 1) % every != 0 for i in range(hp.n_layers)]


def _read_gemma(cfg: dict[str, Any], hp: HParams) -> None:
    _check_activation(cfg, hp)


def _write_gemma(w: gguf.GGUFWriter, hp: HParams) -> None:
    pass  # Gemma 1 needs nothing beyond the common keys


def _read_gemma2(cfg: dict[str, Any], hp: HParams) -> None:
    _check_activation(cfg, hp)
    hp.sliding_window = _int(cfg, "sliding_window", 4096)
    hp.swa_layers = _swa_layers(cfg, hp, 2)
    hp.attn_softcap = _opt_float(cfg, "attn_logit_softcapping")
    hp.final_softcap = _opt_float(cfg, "final_logit_softcapping")
    # llama.cpp hard-codes the query scale: 1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the
    # 46-layer 27B; any other query_pre_attn_scalar would silently change the model.
    scalar = cfg.get("query_pre_attn_scalar", hp.head_dim)
    expected = hp.hidden_size // hp.n_heads if hp.n_layers == 46 else hp.head_dim
    if scalar != expected:
        raise _cfg_error("query_pre_attn_scalar", f"is {scalar!r}; llama.cpp's gemma2 graph "
                         f"scales queries by 1/sqrt({expected}) for this model")


def _write_gemma2(w: gguf.GGUFWriter, hp: HParams) -> None:
    if hp.attn_softcap:
        w.add_attn_logit_softcapping(hp.attn_softcap)
    if hp.final_softcap:
        w.add_final_logit_softcapping(hp.final_softcap)
    assert hp.sliding_window is not None
    w.add_sliding_window(hp.sliding_window)
    w.add_sliding_window_pattern(hp.swa_layers)


def _read_gemma3(cfg: dict[str, Any], hp: HParams) -> None:
    _check_activation(cfg, hp)
    if cfg.get("attn_logit_softcapping") is not None:
        raise _cfg_error("attn_logit_softcapping", "is set; Gemma 3 has no attention soft-capping")
    hp.final_softcap = _opt_float(cfg, "final_logit_softcapping")
    hp.rope_local_theta = _float(cfg, "rope_local_base_freq", 10_000.0)
    scalar = cfg.get("query_pre_attn_scalar", hp.head_dim)
    expected = hp.hidden_size // hp.n_heads if hp.n_layers == 62 else hp.head_dim
    if scalar != expected:
        raise _cfg_error("query_pre_attn_scalar", f"is {scalar!r}; llama.cpp's gemma3 graph "
                         f"scales queries by 1/sqrt({expected}) for this model")
    if cfg.get("sliding_window"):
        hp.sliding_window = _int(cfg, "sliding_window")
        hp.swa_layers = _swa_layers(cfg, hp, 6)
    scaling = cfg.get("rope_scaling")
    if scaling:
        kind = scaling.get("rope_type") or scaling.get("type") if isinstance(scaling, dict) else None
        if kind != "linear":
            raise _cfg_error("rope_scaling", f"is {scaling!r}; only linear scaling is supported")
        hp.rope_linear_factor = _float(scaling, "factor")


def _write_gemma3(w: gguf.GGUFWriter, hp: HParams) -> None:
    if hp.final_softcap:
        w.add_final_logit_softcapping(hp.final_softcap)
    if hp.sliding_window:
        w.add_sliding_window(hp.sliding_window)
        w.add_sliding_window_pattern(hp.swa_layers)
    if hp.rope_local_theta:
        w.add_rope_freq_base_swa(hp.rope_local_theta)
    if hp.rope_linear_factor:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(hp.rope_linear_factor)


ARCHITECTURES: dict[str, ArchSpec] = {
    spec.hf_name: spec for spec in (
        ArchSpec("GemmaForCausalLM", gguf.MODEL_ARCH.GEMMA, "Gemma / CodeGemma",
                 _read_gemma, _write_gemma, supports_untied_output=False),
        ArchSpec("Gemma2ForCausalLM", gguf.MODEL_ARCH.GEMMA2, "Gemma 2",
                 _read_gemma2, _write_gemma2, supports_untied_output=False),
        ArchSpec("Gemma3ForCausalLM", gguf.MODEL_ARCH.GEMMA3, "Gemma 3, text only",
                 _read_gemma3, _write_gemma3, supports_untied_output=True),
    )
}


def supported_list() -> str:
    return ", ".join(f"{n} ({s.label})" for n, s in ARCHITECTURES.items())


def read_config(directory: Path) -> tuple[ArchSpec, HParams]:
    """Read and validate ``directory/config.json``."""
    path = directory / "config.json"
    if not path.is_file():
        raise QuantizeError(f"not a Hugging Face checkpoint: {directory} has no config.json",
                            "pass the checkpoint directory (config.json, *.safetensors, "
                            "tokenizer.model) or a .gguf file")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantizeError(f"unreadable {path}: {exc}",
                            "use the config.json that was published with the checkpoint") from None
    if not isinstance(cfg, dict):
        raise _cfg_error("", "is not a JSON object")
    archs = cfg.get("architectures") or []
    name = archs[0] if isinstance(archs, list) and archs else cfg.get("model_type", "?")
    spec = ARCHITECTURES.get(str(name))
    if spec is None:
        raise QuantizeError(f"unsupported architecture {name!r} in {path}",
                            f"supported: {supported_list()}")
    n_heads = _int(cfg, "num_attention_heads")
    hidden = _int(cfg, "hidden_size")
    hp = HParams(
        hf_architecture=spec.hf_name,
        vocab_size=_int(cfg, "vocab_size"),
        hidden_size=hidden,
        intermediate_size=_int(cfg, "intermediate_size"),
        n_layers=_int(cfg, "num_hidden_layers"),
        n_heads=n_heads,
        n_kv_heads=_int(cfg, "num_key_value_heads", n_heads),
        head_dim=_int(cfg, "head_dim", hidden // n_heads if hidden % n_heads == 0 else None),
        context_length=_int(cfg, "max_position_embeddings"),
        rms_eps=_float(cfg, "rms_norm_eps", 1e-6),
        rope_theta=_float(cfg, "rope_theta", 10_000.0),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        name=str(cfg.get("_name_or_path") or directory.resolve().name).rstrip("/").split("/")[-1],
        torch_dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32"),
        bos_token_id=_opt_id(cfg, "bos_token_id"),
        eos_token_id=_opt_id(cfg, "eos_token_id"),
        pad_token_id=_opt_id(cfg, "pad_token_id"),
    )
    if hp.n_heads % hp.n_kv_heads:
        raise _cfg_error("num_key_value_heads", f"({hp.n_kv_heads}) must divide "
                         f"num_attention_heads ({hp.n_heads})")
    spec.read_extra(cfg, hp)
    return spec, hp


def write_hparams(w: gguf.GGUFWriter, spec: ArchSpec, hp: HParams) -> None:
    """The architecture keys llama.cpp reads for this model."""
    w.add_context_length(hp.context_length)
    w.add_embedding_length(hp.hidden_size)
    w.add_block_count(hp.n_layers)
    w.add_feed_forward_length(hp.intermediate_size)
    w.add_head_count(hp.n_heads)
    w.add_head_count_kv(hp.n_kv_heads)
    w.add_key_length(hp.head_dim)
    w.add_value_length(hp.head_dim)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    w.add_rope_freq_base(hp.rope_theta)
    spec.write_extra(w, hp)
