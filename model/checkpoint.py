"""Save and load the Hugging Face checkpoint layout that ``codefill quantize`` reads.

A directory with ``config.json`` (GemmaForCausalLM), ``model.safetensors`` (or shards plus
``model.safetensors.index.json``) under the HF tensor names, ``generation_config.json`` and the
tokenizer (``tokenizer.model`` SentencePiece + ``tokenizer_config.json``). The output embedding
is tied, so there is no ``lm_head.weight``, as in the published CodeGemma checkpoints.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .config import GemmaConfig
from .gemma import GemmaForCausalLM
from .lora import merged_state_dict

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json")


def hf_state_dict(model: GemmaForCausalLM, dtype: str = "float32") -> dict[str, torch.Tensor]:
    """HF-named tensors, LoRA adapters merged into their base weights, contiguous, on CPU."""
    return {k: v.detach().to("cpu", _DTYPES[dtype]).contiguous()
            for k, v in merged_state_dict(model).items()}


def save_pretrained(model: GemmaForCausalLM, directory: Path, *, tokenizer_dir: Path | None,
                    dtype: str = "float32", name: str = "codefill-gemma") -> Path:
    """Write the checkpoint; ``tokenizer_dir`` holds tokenizer.model (copied alongside)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_hf(name=name, torch_dtype=dtype)
    tmp = directory / "model.safetensors.tmp"
    save_file(hf_state_dict(model, dtype), str(tmp), metadata={"format": "pt"})
    tmp.replace(directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (directory / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
         "pad_token_id": cfg["pad_token_id"]}) + "\n")
    if tokenizer_dir is not None and tokenizer_dir.resolve() != directory.resolve():
        for fname in TOKENIZER_FILES:
            if (tokenizer_dir / fname).is_file():
                shutil.copyfile(tokenizer_dir / fname, directory / fname)
    return directory


def _weight_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / n for n in names]
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"no model.safetensors (or index) in {directory}")


def load_config(directory: Path) -> GemmaConfig:
    return GemmaConfig.from_hf(json.loads((directory / "config.json").read_text()))


def load_pretrained(directory: Path, dtype: torch.dtype = torch.float32) -> GemmaForCausalLM:
    """A model from an HF Gemma checkpoint directory (e.g. CodeGemma 2B, or one we saved)."""
    from safetensors.torch import load_file

    cfg = load_config(directory)
    # Build on the meta device: a 2B model is not initialised twice before its weights arrive.
    with torch.device("meta"):
        model = GemmaForCausalLM(cfg)
    state: dict[str, torch.Tensor] = {}
    for f in _weight_files(directory):
        state.update(load_file(str(f)))
    state.pop("lm_head.weight", None)  # some exports store the tied head again
    state = {k: v.to(dtype) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"checkpoint tensors do not match Gemma: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")
    return model
