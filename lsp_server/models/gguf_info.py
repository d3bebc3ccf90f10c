"""Read what a GGUF file says about itself: architecture, context, quantization, vocabulary.

Only metadata and the tensor index are read (memory-mapped, see gguf_header), so describing a
multi-GB model is fast and needs no weights in RAM. Every failure becomes a :class:`ModelError` naming the file.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from ..errors import ModelError
from .gguf_header import GGUFFormatError, GGUFHeader, read_header

# Architectures llama.cpp can run, as gguf-py (released in lock-step with llama.cpp) names them.
KNOWN_ARCHITECTURES: frozenset[str] = frozenset(gguf.MODEL_ARCH_NAMES.values())

_T = gguf.Keys.Tokenizer
# Role → metadata keys, newest spelling first (older converters wrote prefix/suffix/middle_id).
_ID_KEYS: dict[str, tuple[str, ...]] = {
    "bos": (_T.BOS_ID,),
    "eos": (_T.EOS_ID,),
    "eot": (_T.EOT_ID,),
    "eom": (_T.EOM_ID,),
    "pad": (_T.PAD_ID,),
    "fim_pre": (_T.FIM_PRE_ID, _T.PREFIX_ID),
    "fim_suf": (_T.FIM_SUF_ID, _T.SUFFIX_ID),
    "fim_mid": (_T.FIM_MID_ID, _T.MIDDLE_ID),
    "fim_pad": (_T.FIM_PAD_ID,),
    "fim_rep": (_T.FIM_REP_ID,),
    "fim_sep": (_T.FIM_SEP_ID,),
}

# Token types (llama.cpp's llama_token_type): 3 = control, 4 = user-defined.
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


@dataclass
class ModelInfo:
    """What a GGUF file declares about the model inside."""

    path: Path
    size_bytes: int
    architecture: str
    name: str
    context_length: int | None
    quantization: str
    n_params: int
    tokens: list[str] = field(repr=False, default_factory=list)
    token_types: list[int] = field(repr=False, default_factory=list)
    special_ids: dict[str, int] = field(default_factory=dict)
    """Metadata token ids: bos, eos, eot, fim_pre, fim_suf, fim_mid, fim_sep, fim_rep…"""
    add_bos: bool = True
    tensor_dims: dict[str, tuple[int, ...]] = field(repr=False, default_factory=dict)
    """Tensor name → dimensions in ggml order (what an adapter's tensors are checked against)."""
    _index: dict[str, int] | None = field(default=None, repr=False)

    def token_id(self, text: str) -> int | None:
        """Id of the vocabulary entry whose text is exactly ``text``."""
        if self._index is None:
            index: dict[str, int] = {}
            for i, t in enumerate(self.tokens):
                index.setdefault(t, i)
            self._index = index
        return self._index.get(text)

    def token_text(self, token_id: int) -> str | None:
        return self.tokens[token_id] if 0 <= token_id < len(self.tokens) else None


def _quantization(header: GGUFHeader) -> str:
    ftype = header.metadata.get(gguf.Keys.General.FILE_TYPE)
    if isinstance(ftype, int):
        try:
            return gguf.LlamaFileType(ftype).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    # No (or an unknown) file type: name the tensor type holding most bytes.
    by_type: collections.Counter[str] = collections.Counter()
    for t in header.tensors:
        by_type[t.type_name] += t.n_bytes
    return by_type.most_common(1)[0][0] if by_type else "unknown"


def read_gguf_file(p: Path, noun: str, *, fix: str, damaged: str, redo: str,
                   other_format: str) -> tuple[GGUFHeader, int]:
    """The header and byte size of the GGUF at ``p``, a ``noun`` ("model", "adapter") file.

    A :class:`ModelError` naming the file when it is missing or a directory (``fix``), not a GGUF
    (``other_format``), unreadable, or truncated or corrupted (``damaged`` names the file in that
    message, ``redo`` is its fix).
    """
    if not p.exists():
        raise ModelError(f"{noun} file not found: {p}", fix)
    if p.is_dir():
        raise ModelError(f"{noun} path is a directory, not a GGUF file: {p}", fix)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            magic = fh.read(4)
        if magic != b"GGUF":
            raise ModelError(f"not a GGUF {noun} file: {p} (starts with {magic!r})", other_format)
        header = read_header(p)
    except (GGUFFormatError, OverflowError, MemoryError) as exc:
        raise ModelError(f"truncated or corrupted {damaged}: {p} ({exc})", redo) from None
    except OSError as exc:
        raise ModelError(f"cannot read {noun} file {p}: {exc.strerror or exc}",
                         "check the file's permissions") from None
    if header.tensors:
        end = max(t.offset + t.n_bytes for t in header.tensors)
        if end > size:
            raise ModelError(f"truncated {damaged}: {p} has {size} bytes, its tensors need {end}",
                             redo)
    return header, size


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Describe the GGUF at ``path``; raise :class:`ModelError` when it cannot be used."""
    p = Path(path).expanduser()
    fix = "pass --model with a .gguf file, or leave it out to use the embedded default model"
    header, size = read_gguf_file(
        p, "model", fix=fix, damaged="GGUF file", redo="download or convert the model again",
        other_format="convert the checkpoint with `codefill quantize` or download a .gguf build")
    meta = header.metadata

    arch = meta.get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or not arch:
        raise ModelError(f"GGUF file {p} names no architecture (general.architecture)",
                         "convert the model again with a current converter")
    if arch not in KNOWN_ARCHITECTURES:
        raise ModelError(f"unknown model architecture {arch!r} in {p}",
                         "use a model of an architecture llama.cpp supports (llama, gemma, "
                         "gemma2, gemma3, qwen2, starcoder2, …)")

    tokens = meta.get(gguf.Keys.Tokenizer.LIST) or []
    types = meta.get(gguf.Keys.Tokenizer.TOKEN_TYPE) or []
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens[:16]):
        raise ModelError(f"unreadable vocabulary in {p}", "download or convert the model again")

    special: dict[str, int] = {}
    for role, keys in _ID_KEYS.items():
        for key in keys:
            v = meta.get(key)
            if isinstance(v, int) and 0 <= v and (not tokens or v < len(tokens)):
                special[role] = v
                break
    return ModelInfo(
        path=p,
        size_bytes=size,
        architecture=arch,
        name=str(meta.get(gguf.Keys.General.NAME) or ""),
        context_length=meta.get(gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=arch)),
        quantization=_quantization(header),
        n_params=sum(t.n_elements for t in header.tensors),
        tokens=tokens,
        token_types=types,
        special_ids=special,
        add_bos=bool(meta.get(gguf.Keys.Tokenizer.ADD_BOS, True)),
        tensor_dims={t.name: t.dims for t in header.tensors},
    )
