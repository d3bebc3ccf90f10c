"""Random-weight checkpoints in the exact Hugging Face Gemma layout (:func:`write_checkpoint`).

Nothing may download weights here, so the quantizer's tests and bench/quantize.py build their
own: config.json with the keys CodeGemma 2B publishes (dimensions overridden),
``model.safetensors`` (or shards with an index) under the published tensor names, and a small
SentencePiece BPE tokenizer trained on the spot with the FIM sentinels as user-defined symbols
and Gemma's special-token ids (pad 0, eos 1, bos 2, unk 3). Needs the ``sentencepiece`` and
``safetensors`` packages (dev extra).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from model.config import CODEGEMMA_2B_CONFIG
from model.tokenizer import reserved_symbols, write_tokenizer_config
from quantize.hf_config import ARCHITECTURES
from quantize.tensor_map import LAYER_TENSORS

# What Gemma 2 / Gemma 3 (text) configs add or change.
ARCH_CONFIG_EXTRA: dict[str, dict[str, Any]] = {
    "GemmaForCausalLM": {},
    "Gemma2ForCausalLM": {"model_type": "gemma2", "attn_logit_softcapping": 50.0,
                          "final_logit_softcapping": 30.0, "query_pre_attn_scalar": None,
                          "sliding_window": 4096, "cache_implementation": "hybrid"},
    "Gemma3ForCausalLM": {"model_type": "gemma3_text", "query_pre_attn_scalar": None,
                          "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0,
                          "sliding_window": 512, "sliding_window_pattern": 6,
                          "final_logit_softcapping": None, "attn_logit_softcapping": None},
}

CODE_SAMPLES = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "import os\nimport sys\n\n\ndef main(argv):\n    for name in argv[1:]:\n        print(os.path.basename(name))\n    return 0\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n",
    "function add(a, b) {\n  return a + b;\n}\n\nconst total = [1, 2, 3].reduce(add, 0);\nconsole.log(total);\n",
    "for (int i = 0; i < n; ++i) {\n    sum += values[i] * weights[i];\n}\nreturn sum / n;\n",
    "SELECT name, count(*) FROM users WHERE age > 30 GROUP BY name ORDER BY name;\n",
    "with open(path, 'r', encoding='utf-8') as fh:\n    data = json.load(fh)\nresult = {k: v for k, v in data.items() if v}\n",
    "fn main() {\n    let xs: Vec<i32> = (0..10).collect();\n    println!(\"{:?}\", xs);\n}\n",
]


def corpus_lines(n: int = 400, seed: int = 0) -> Iterator[str]:
    """Deterministic code-like text (samples with renamed identifiers and numbers)."""
    rng = np.random.default_rng(seed)
    names = ["value", "count", "index", "result", "items", "total", "node", "path", "data", "key"]
    for i in range(n):
        text = CODE_SAMPLES[i % len(CODE_SAMPLES)]
        a, b = rng.choice(names, 2, replace=False)
        text = text.replace("n", str(a)[0] + "n", 1).replace("sum", str(b)).replace(
            "30", str(int(rng.integers(0, 1000))))
        yield from text.splitlines()


def train_tokenizer(directory: Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Train a SentencePiece BPE tokenizer like Gemma's (byte fallback, no dummy prefix)."""
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / "tokenizer"
    spm.SentencePieceTrainer.train(
        sentence_iterator=corpus_lines(seed=seed), model_prefix=str(prefix),
        model_type="bpe", vocab_size=vocab_size, byte_fallback=True, character_coverage=1.0,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=reserved_symbols(),
        add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        num_threads=1, minloglevel=2)
    prefix.with_suffix(".vocab").unlink()
    return prefix.with_suffix(".model")


def make_config(arch: str = "GemmaForCausalLM", **dims: Any) -> dict[str, Any]:
    """A config.json dict of ``arch`` with the dimensions in ``dims`` overridden."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch}")
    cfg = {**CODEGEMMA_2B_CONFIG, **ARCH_CONFIG_EXTRA[arch], "architectures": [arch]}
    cfg.update(dims)
    if cfg.get("query_pre_attn_scalar", 0) is None:
        cfg["query_pre_attn_scalar"] = cfg["head_dim"]
    return cfg


def random_weights(cfg: dict[str, Any], seed: int = 0, std: float = 0.02,
                   norm_std: float = 0.1) -> dict[str, np.ndarray]:
    """Tensors under the published names, float32. Norm weights are stored as Gemma stores them
    (the effective scale is 1 + w), so a missing +1 in conversion shows in the logits."""
    rng = np.random.default_rng(seed)
    arch = ARCHITECTURES[cfg["architectures"][0]].gguf_arch
    h, inter, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    nh, nkv, vocab = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
    shapes = {
        "input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
        "pre_feedforward_layernorm.weight": (h,), "post_feedforward_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (nh * hd, h), "self_attn.k_proj.weight": (nkv * hd, h),
        "self_attn.v_proj.weight": (nkv * hd, h), "self_attn.o_proj.weight": (h, nh * hd),
        "self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,),
        "mlp.gate_proj.weight": (inter, h), "mlp.up_proj.weight": (inter, h),
        "mlp.down_proj.weight": (h, inter),
    }

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        s = norm_std if len(shape) == 1 else std
        return (rng.standard_normal(shape, dtype=np.float32) * s).astype(np.float32)

    out = {"model.embed_tokens.weight": draw((vocab, h))}
    for i in range(cfg["num_hidden_layers"]):
        for suffix in LAYER_TENSORS[arch]:
            out[f"model.layers.{i}.{suffix}"] = draw(shapes[suffix])
    out["model.norm.weight"] = draw((h,))
    return out


_ST_DTYPES = {"float32": ("F32", "<f4"), "float16": ("F16", "<f2"), "bfloat16": ("BF16", None)}


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "float32") -> None:
    """Write ``tensors`` (float32) as ``dtype``. F32/F16 go through the safetensors package;
    BF16 (no numpy dtype) is written byte by byte per the format (rounded to nearest even)."""
    code, np_dtype = _ST_DTYPES[dtype]
    if np_dtype is not None:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v.astype(np_dtype)) for k, v in tensors.items()},
                  str(path), metadata={"format": "pt"})
        return
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
        bf = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even
        raw = bf.tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(head)) + head)
        for raw in blobs:
            fh.write(raw)


def bf16_round(a: np.ndarray) -> np.ndarray:
    """What a float32 array becomes after a BF16 round trip (for reference computations)."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def write_checkpoint(directory: Path, cfg: dict[str, Any], *, seed: int = 0,
                     dtype: str = "float32", shards: int = 1, tokenizer_vocab: int = 512,
                     std: float = 0.02, norm_std: float = 0.1,
                     weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Write a complete checkpoint into ``directory``; returns its float32 weights.

    ``cfg['vocab_size']`` is set to the trained tokenizer's size when it is 0.
    """
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    model = train_tokenizer(directory, tokenizer_vocab, seed)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    write_tokenizer_config(directory, pieces)
    if not cfg.get("vocab_size"):
        cfg = {**cfg, "vocab_size": len(pieces)}
    cfg = {**cfg, "torch_dtype": dtype}
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    tensors = weights if weights is not None else random_weights(cfg, seed, std, norm_std)
    names = list(tensors)
    if shards <= 1:
        save_safetensors(directory / "model.safetensors", tensors, dtype)
    else:
        weight_map: dict[str, str] = {}
        for k, part in enumerate(np.array_split(np.arange(len(names)), shards)):
            fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            save_safetensors(directory / fname, {names[j]: tensors[names[j]] for j in part}, dtype)
            weight_map.update({names[j]: fname for j in part})
        total = sum(v.size * (4 if dtype == "float32" else 2) for v in tensors.values())
        (directory / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (directory / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}))
    if dtype == "bfloat16":
        return {k: bf16_round(v) for k, v in tensors.items()}
    if dtype == "float16":
        return {k: v.astype(np.float16).astype(np.float32) for k, v in tensors.items()}
    return tensors
