"""Write small GGUF files with gguf-py: a family's vocabulary, no real weights."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

FILLER = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["def", "return", " ", "\n"]

# Special tokens as each family's tokenizer spells them (the FIM sentinels and their stops).
FAMILY_SPECIALS: dict[str, list[str]] = {
    "codegemma": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                  "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_separator|>"],
    "qwen2.5-coder": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>",
                      "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
                      "<|file_sep|>"],
    "starcoder": ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
                  "<repo_name>", "<file_sep>", "<issue_start>"],
    "starcoder1": ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
                   "<filename>", "<gh_stars>"],
    "deepseek-coder": ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>",
                       "<｜fim▁begin｜>", "<｜fim▁end｜>", "<|EOT|>"],
    "codellama": ["<unk>", "<s>", "</s>", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"],
    "codestral": ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[PREFIX]", "[MIDDLE]",
                  "[SUFFIX]"],
    "plain": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
}

ARCH = {"codegemma": "gemma", "qwen2.5-coder": "qwen2", "starcoder": "starcoder2",
        "starcoder1": "starcoder", "deepseek-coder": "llama", "codellama": "llama",
        "codestral": "llama", "plain": "gemma3"}


def write_vocab_gguf(path: Path, specials: list[str], *, arch: str = "llama",
                     metadata_ids: dict[str, int] | None = None, name: str = "test-model",
                     context_length: int = 2048, eos: str | None = None) -> Path:
    """A GGUF with ``specials`` (control tokens) + filler text tokens and one tiny tensor."""
    tokens = specials + FILLER
    types = [gguf.TokenType.CONTROL] * len(specials) + [gguf.TokenType.NORMAL] * len(FILLER)
    w = gguf.GGUFWriter(path, arch)  # writes general.architecture itself
    w.add_name(name)
    w.add_context_length(context_length)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    if eos and eos in tokens:
        w.add_eos_token_id(tokens.index(eos))
    for key, value in (metadata_ids or {}).items():
        w.add_uint32(key, value)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_family_gguf(directory: Path, family: str, **kw: object) -> Path:
    # A neutral file name: detection must read the GGUF, never the name.
    index = list(FAMILY_SPECIALS).index(family)
    return write_vocab_gguf(directory / f"model-{index}.gguf", FAMILY_SPECIALS[family],
                            arch=ARCH[family], **kw)  # type: ignore[arg-type]
