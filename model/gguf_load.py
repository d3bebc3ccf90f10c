"""Gemma 3 weights from a GGUF file (e.g. the embedded Q4_K_M 270M) into :mod:`model.gemma3`.

Each tensor is dequantized to float32 with gguf-py (``gguf.quants.dequantize``), renamed from
llama.cpp's name to the Hugging Face one by a lookup table (an unknown name is an error naming
it: silently dropping a tensor would build a model that loads but computes something else), and
checked against the shape the module expects. The configuration comes from the ``gemma3.*``
metadata, with llama.cpp's defaults for the keys a file may leave out.

The norms: Gemma computes ``x · (1 + w)`` and llama.cpp ``x · g``, so llama.cpp's converter
(``conversion/gemma.py``, ``Gemma3Model.modify_tensors``: ``norm_shift`` 1.0 for every name
ending in ``norm.weight``, which includes q_norm and k_norm) stores ``g = w + 1``. Loading
subtracts the 1 again; the module keeps HF's convention so its checkpoints are HF checkpoints.

Quantized torch weights are *not* the point: the model computes in float32 with the dequantized
values, i.e. exactly the weights llama.cpp multiplies by, so the two differ only in how
llama.cpp rounds activations (see tests/test_model_gemma3.py).

gguf-py's ``GGUFReader`` needs ~30 s for the 262k-token vocabulary; the metadata comes from the
daemon's fast header reader, and tensor dimensions from a small walk of the same header below.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from lsp_server.models.gguf_header import read_header
from quantize.tensor_map import GLOBAL_TENSORS, LAYER_TENSORS, SHIFTED_NORMS

from .gemma3 import FULL, SLIDING, Gemma3Config, Gemma3ForCausalLM

ARCH = "gemma3"


class GGUFLoadError(ValueError):
    """The GGUF is not a Gemma 3 text model this loader can map."""


# -- the name table ---------------------------------------------------------------------------
# llama.cpp name → (HF name, whether the stored values are 1 + w). Built by inverting the
# quantizer's HF → GGUF table for Gemma 3, so the two directions cannot drift apart. Gemma 1's
# "ffn_norm" is Gemma 3's pre_feedforward_layernorm: the inversion is per architecture.

def _build_tables() -> tuple[dict[str, tuple[str, bool]], dict[str, tuple[str, bool]]]:
    global_names: dict[str, tuple[str, bool]] = {}
    for hf, kind in GLOBAL_TENSORS.items():
        if kind == gguf.MODEL_TENSOR.OUTPUT:
            continue  # an untied head: Gemma 3's output is the embedding (refused below)
        global_names[gguf.TENSOR_NAMES[kind] + ".weight"] = (hf, kind in SHIFTED_NORMS)
    layer: dict[str, tuple[str, bool]] = {}
    for hf_suffix, kind in LAYER_TENSORS[gguf.MODEL_ARCH.GEMMA3].items():
        suffix = gguf.TENSOR_NAMES[kind].removeprefix("blk.{bid}.") + ".weight"
        if suffix in layer:
            raise AssertionError(f"two HF tensors map to {suffix}")
        layer[suffix] = (hf_suffix, kind in SHIFTED_NORMS)
    return global_names, layer


GLOBAL_NAMES, LAYER_NAMES = _build_tables()
_BLK = re.compile(r"blk\.(\d+)\.(.+)")


def hf_name(gguf_name: str, n_layers: int) -> tuple[str, bool]:
    """(HF name, stored-as-1+w) for a llama.cpp tensor name; GGUFLoadError for anything else."""
    if gguf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[gguf_name]
    if gguf_name == "output.weight":
        raise GGUFLoadError("tensor 'output.weight': an untied output head is not supported "
                            "(Gemma 3's output projection is the token embedding)")
    m = _BLK.fullmatch(gguf_name)
    if m and m.group(2) in LAYER_NAMES:
        i = int(m.group(1))
        if i >= n_layers:
            raise GGUFLoadError(f"tensor {gguf_name!r} belongs to layer {i}, but the metadata "
                                f"declares {n_layers} layers")
        suffix, shifted = LAYER_NAMES[m.group(2)]
        return f"model.layers.{i}.{suffix}", shifted
    raise GGUFLoadError(f"unknown tensor {gguf_name!r} for Gemma 3 (known: "
                        f"{', '.join(sorted(GLOBAL_NAMES))}, blk.N.{{"
                        f"{', '.join(sorted(s.removesuffix('.weight') for s in LAYER_NAMES))}"
                        f"}}.weight)")


# -- tensor index -----------------------------------------------------------------------------

@dataclass(frozen=True)
class GGUFTensor:
    name: str
    dims: tuple[int, ...]
    """ggml order: dims[0] is the contiguous (innermost) one, i.e. in_features of a matrix."""
    qtype: GGMLQuantizationType
    offset: int
    """Absolute file offset of the data."""
    n_bytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """Row-major (torch/numpy) shape: the dims reversed, (out_features, in_features)."""
        return tuple(reversed(self.dims))


_SCALAR_SIZE = {GGUFValueType.UINT8: 1, GGUFValueType.INT8: 1, GGUFValueType.BOOL: 1,
                GGUFValueType.UINT16: 2, GGUFValueType.INT16: 2, GGUFValueType.UINT32: 4,
                GGUFValueType.INT32: 4, GGUFValueType.FLOAT32: 4, GGUFValueType.UINT64: 8,
                GGUFValueType.INT64: 8, GGUFValueType.FLOAT64: 8}


def read_tensor_index(path: str | Path) -> list[GGUFTensor]:
    """The tensor index with dimensions, skipping over the metadata values without decoding.

    The daemon's header reader keeps sizes and offsets but not dimensions; the loader needs them
    to tell a (2048, 640) matrix from a (640, 2048) one. Little-endian GGUF v2/v3 only (what
    llama.cpp writes on every platform it supports).
    """
    with open(path, "rb") as fh:
        head = fh.read(24)
        if head[:4] != b"GGUF":
            raise GGUFLoadError(f"{path}: not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", head, 4)
        if version not in (2, 3):
            raise GGUFLoadError(f"{path}: unsupported GGUF version {version} (big-endian?)")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    raw = memoryview(mm)  # type: ignore[arg-type]
    pos = 24

    def u32() -> int:
        nonlocal pos
        pos += 4
        return struct.unpack_from("<I", raw, pos - 4)[0]

    def u64() -> int:
        nonlocal pos
        pos += 8
        return struct.unpack_from("<Q", raw, pos - 8)[0]

    def skip_value(vtype: int) -> None:
        nonlocal pos
        if vtype == GGUFValueType.STRING:
            n = u64()  # not `pos += u64()`: that would add to pos as read before the call
            pos += n
        elif vtype == GGUFValueType.ARRAY:
            sub, count = u32(), u64()
            if sub in _SCALAR_SIZE:
                pos += count * _SCALAR_SIZE[GGUFValueType(sub)]
            else:  # strings (the vocabulary) or nested arrays: one by one
                for _ in range(count):
                    skip_value(sub)
        elif vtype in _SCALAR_SIZE:
            pos += _SCALAR_SIZE[GGUFValueType(vtype)]
        else:
            raise GGUFLoadError(f"{path}: unknown metadata value type {vtype} at byte {pos}")

    def string() -> str:
        nonlocal pos
        n = u64()
        pos += n
        return bytes(raw[pos - n:pos]).decode("utf-8", errors="replace")

    alignment = 32
    for _ in range(n_kv):
        key = string()
        vtype = u32()
        if key == "general.alignment" and vtype == GGUFValueType.UINT32:
            alignment = u32()
        else:
            skip_value(vtype)
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = tuple(u64() for _ in range(u32()))
        qtype = GGMLQuantizationType(u32())
        infos.append((name, dims, qtype, u64()))
    data_offset = -(-pos // alignment) * alignment
    out = []
    for name, dims, qtype, offset in infos:
        block, type_size = GGML_QUANT_SIZES[qtype]
        n = int(np.prod(dims, dtype=np.int64))
        out.append(GGUFTensor(name, dims, qtype, data_offset + offset, n // block * type_size))
    return out


def dequantize(path: str | Path, t: GGUFTensor) -> np.ndarray:
    """The tensor as float32 in row-major shape ``t.shape`` (a fresh, writable array)."""
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=t.offset, shape=(t.n_bytes,))
    block, type_size = GGML_QUANT_SIZES[t.qtype]
    # gguf-py dequantizes rows of blocks: (..., bytes per row) → (..., elements per row).
    rows = mm.reshape(*t.shape[:-1], t.dims[0] // block * type_size)
    arr = gguf.quants.dequantize(rows, t.qtype)
    return np.array(arr, dtype=np.float32, copy=True).reshape(t.shape)


# -- config -----------------------------------------------------------------------------------

def _uniform(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    v = meta.get(key, default)
    if isinstance(v, list):  # per-layer arrays (some architectures); Gemma 3's are uniform
        if len(set(v)) != 1:
            raise GGUFLoadError(f"{key} varies by layer ({v}); not a Gemma 3 layout")
        v = v[0]
    return v


def config_from_metadata(meta: dict[str, Any], vocab_size: int) -> Gemma3Config:
    """Gemma3Config from ``gemma3.*`` keys, defaulting as llama.cpp's gemma3 loader does."""
    arch = meta.get("general.architecture")
    if arch != ARCH:
        raise GGUFLoadError(f"general.architecture is {arch!r}, not {ARCH!r}")
    k = lambda name: f"{ARCH}.{name}"  # noqa: E731
    for key in (k("embedding_length"), k("block_count"), k("feed_forward_length"),
                k("attention.head_count")):
        if key not in meta:
            raise GGUFLoadError(f"metadata key {key} is missing")
    hidden, n_layers = int(meta[k("embedding_length")]), int(meta[k("block_count")])
    n_heads = int(_uniform(meta, k("attention.head_count")))
    n_kv = int(_uniform(meta, k("attention.head_count_kv"), n_heads))
    head_dim = int(meta.get(k("attention.key_length"), hidden // n_heads))
    if int(meta.get(k("attention.value_length"), head_dim)) != head_dim:
        raise GGUFLoadError("attention.value_length differs from key_length; not Gemma 3")
    if meta.get(k("attn_logit_softcapping")):
        raise GGUFLoadError(f"{k('attn_logit_softcapping')} is set: Gemma 3 has no attention "
                            "soft-capping and llama.cpp's gemma3 graph would ignore it")
    window = int(meta.get(k("attention.sliding_window"), 0)) or None
    pattern = meta.get(k("attention.sliding_window_pattern"), 6)
    layer_types: tuple[str, ...] | None = None
    if isinstance(pattern, list):  # explicit per-layer flags (what `codefill quantize` writes)
        if len(pattern) != n_layers:
            raise GGUFLoadError(f"sliding_window_pattern lists {len(pattern)} layers, not "
                                f"{n_layers}")
        layer_types = tuple(SLIDING if s else FULL for s in pattern)
        pattern = 6
    elif int(pattern) <= 0:  # llama.cpp: a pattern of 0 makes every layer slide
        layer_types, pattern = (SLIDING,) * n_layers, 6
    kind = meta.get(k("rope.scaling.type"), "none")
    if kind not in ("none", "linear"):
        raise GGUFLoadError(f"rope scaling {kind!r}: Gemma 3 uses linear scaling only")
    # llama.cpp: freq_scale = 1 / factor (the old key name as fallback), global layers only.
    factor = float(meta.get(k("rope.scaling.factor")) or meta.get(k("rope.scale_linear")) or 1.0)
    softcap = meta.get(k("final_logit_softcapping")) or None
    # llama.cpp has no key for query_pre_attn_scalar: it scales queries by 1/sqrt(head_dim),
    # or 1/sqrt(hidden/heads) for the 62-layer 27B (gemma_pytorch's config); so do we.
    scalar = hidden // n_heads if n_layers == 62 else head_dim
    return Gemma3Config(
        vocab_size=vocab_size, hidden_size=hidden,
        intermediate_size=int(_uniform(meta, k("feed_forward_length"))),
        num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_kv,
        head_dim=head_dim, max_position_embeddings=int(meta.get(k("context_length"), 131072)),
        rope_theta=float(meta.get(k("rope.freq_base"), 10_000.0)),
        rope_local_base_freq=float(meta.get(k("rope.freq_base_swa"), 10_000.0)),
        rope_scaling_factor=factor, sliding_window=window, sliding_window_pattern=int(pattern),
        layer_types=layer_types, query_pre_attn_scalar=scalar,
        final_logit_softcapping=float(softcap) if softcap else None,
        rms_norm_eps=float(meta.get(k("attention.layer_norm_rms_epsilon"), 1e-6)),
        bos_token_id=int(meta.get("tokenizer.ggml.bos_token_id", 2)),
        eos_token_id=int(meta.get("tokenizer.ggml.eos_token_id", 1)),
        pad_token_id=int(meta.get("tokenizer.ggml.padding_token_id", 0)))


# -- loading ----------------------------------------------------------------------------------

def load_state_dict(path: str | Path, cfg: Gemma3Config,
                    tensors: list[GGUFTensor] | None = None) -> dict[str, torch.Tensor]:
    """HF-named float32 tensors (norms back to HF's w, i.e. stored − 1), shapes checked."""
    tensors = tensors if tensors is not None else read_tensor_index(path)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Gemma3ForCausalLM(cfg).state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    for t in tensors:
        name, shifted = hf_name(t.name, cfg.num_hidden_layers)
        if name in state:
            raise GGUFLoadError(f"tensor {t.name!r} appears twice")
        if t.shape != expected[name]:
            raise GGUFLoadError(f"tensor {t.name!r} has shape {t.shape}, the config implies "
                                f"{expected[name]} for {name}")
        arr = dequantize(path, t)
        if shifted:
            arr -= np.float32(1.0)  # the converter's +1 (see the module docstring)
        state[name] = torch.from_numpy(arr)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise GGUFLoadError(f"{len(missing)} tensors missing from the GGUF, e.g. {missing[:3]}")
    return state


def load_gemma3_gguf(path: str | Path) -> Gemma3ForCausalLM:
    """A float32 Gemma3ForCausalLM (eval mode) with the GGUF's dequantized weights."""
    header = read_header(path)
    tensors = read_tensor_index(path)
    embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise GGUFLoadError("tensor 'token_embd.weight' is missing")
    cfg = config_from_metadata(header.metadata, vocab_size=embd.shape[0])
    state = load_state_dict(path, cfg, tensors)
    with torch.device("meta"):
        model = Gemma3ForCausalLM(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
