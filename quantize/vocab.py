"""The tokenizer of a checkpoint → llama.cpp's SentencePiece ("llama") vocabulary in GGUF.

Sources, first found wins: ``tokenizer.model`` (SentencePiece, read by sentencepiece_model),
else ``tokenizer.json`` (a Hugging Face BPE tokenizer with byte fallback, as Gemma's fast
tokenizer is; merge ranks become scores so llama.cpp merges in the same order).
``tokenizer_config.json``'s ``added_tokens_decoder`` decides control vs user-defined tokens as
in transformers. The FIM sentinels are looked up by text and their ids written to the metadata,
which is how the daemon's template detection (and llama.cpp's /infill) find them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from .errors import QuantizeError
from .hf_config import HParams
from .sentencepiece_model import (BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED,
                                  read_sentencepiece)

_K = gguf.Keys.Tokenizer

# Role → (metadata key, token text as CodeGemma's tokenizer spells it). Written when present.
ROLE_TOKENS: dict[str, tuple[str, str]] = {
    "fim_pre": (_K.FIM_PRE_ID, "<|fim_prefix|>"),
    "fim_suf": (_K.FIM_SUF_ID, "<|fim_suffix|>"),
    "fim_mid": (_K.FIM_MID_ID, "<|fim_middle|>"),
    "fim_sep": (_K.FIM_SEP_ID, "<|file_separator|>"),
    "eot": (_K.EOT_ID, "<end_of_turn>"),
}
# Role → metadata key for the ids that come from config/tokenizer settings, not from text.
ID_KEYS: dict[str, str] = {"bos": _K.BOS_ID, "eos": _K.EOS_ID, "unk": _K.UNK_ID, "pad": _K.PAD_ID}

_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_FIX = "use the tokenizer files that were published with the checkpoint"


@dataclass
class Vocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    special: dict[str, int] = field(default_factory=dict)
    """Role (bos, eos, unk, pad, eot, fim_pre, fim_suf, fim_mid, fim_sep) → token id."""
    add_bos: bool = True
    add_eos: bool = False
    add_space_prefix: bool = False
    remove_extra_whitespaces: bool = False
    source: str = ""

    def token_id(self, text: str) -> int | None:
        try:
            return self.tokens.index(text)
        except ValueError:
            return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantizeError(f"unreadable {path}: {exc}", _FIX) from None
    if not isinstance(data, dict):
        raise QuantizeError(f"unreadable {path}: not a JSON object", _FIX)
    return data


def _from_sentencepiece(path: Path) -> Vocab:
    sp = read_sentencepiece(path)
    if sp.model_type not in ("bpe", "unigram"):
        raise QuantizeError(f"{path} is a SentencePiece {sp.model_type} model",
                            "only BPE and unigram SentencePiece models can be converted")
    v = Vocab(list(sp.pieces), list(sp.scores), list(sp.types),
              add_space_prefix=sp.add_dummy_prefix,
              remove_extra_whitespaces=sp.remove_extra_whitespaces, source=path.name)
    for role, i in (("unk", sp.unk_id), ("bos", sp.bos_id), ("eos", sp.eos_id),
                    ("pad", sp.pad_id)):
        if 0 <= i < len(v.tokens):
            v.special[role] = i
    return v


def _has_prepend(node: Any) -> bool:
    """Whether a tokenizer.json normalizer/pre-tokenizer prepends '▁' (SentencePiece's dummy
    prefix)."""
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    if kind == "Prepend":
        return node.get("prepend") == "▁"
    if kind == "Metaspace":
        return node.get("prepend_scheme", "always" if node.get("add_prefix_space") else
                        "never") != "never"
    return any(_has_prepend(n) for key in ("normalizers", "pretokenizers")
               for n in node.get(key) or [])


def _from_tokenizer_json(path: Path) -> Vocab:
    tj = _read_json(path)
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise QuantizeError(f"{path} is a {model.get('type', '?')} tokenizer without byte "
                            "fallback; only SentencePiece-style BPE (as Gemma's) converts",
                            "add the checkpoint's tokenizer.model")
    vocab: dict[str, int] = model.get("vocab") or {}
    added = [t for t in tj.get("added_tokens") or [] if isinstance(t, dict)]
    n = max([*vocab.values(), *(int(t["id"]) for t in added)], default=-1) + 1
    tokens: list[str | None] = [None] * n
    for piece, i in vocab.items():
        tokens[i] = piece
    for t in added:
        tokens[int(t["id"])] = str(t["content"])
    holes = [i for i, t in enumerate(tokens) if t is None]
    if holes:
        raise QuantizeError(f"{path}: token ids {holes[:5]} have no text", _FIX)
    # A merge's rank is its priority; SentencePiece-style scores rank the merged piece the same
    # way (higher merges first), so score = -rank reproduces the merge order in llama.cpp.
    scores = [0.0] * n
    seen: set[str] = set()
    for rank, merge in enumerate(model.get("merges") or []):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        piece = a + b
        if piece not in seen and piece in vocab:
            seen.add(piece)
            scores[vocab[piece]] = -float(rank)
    unk = model.get("unk_token")
    types = [BYTE if _BYTE_PIECE.fullmatch(t or "") else UNKNOWN if t == unk else NORMAL
             for t in tokens]
    for t in added:
        i = int(t["id"])
        if types[i] != UNKNOWN:
            types[i] = CONTROL if t.get("special") else USER_DEFINED
        scores[i] = -1000.0
    v = Vocab([t or "" for t in tokens], scores, types, source=path.name,
              add_space_prefix=_has_prepend(tj.get("normalizer")) or
              _has_prepend(tj.get("pre_tokenizer")))
    if unk in vocab:
        v.special["unk"] = vocab[unk]
    return v


def _apply_tokenizer_config(v: Vocab, tc: dict[str, Any]) -> None:
    """transformers' view of added tokens: 'special' ones are control tokens, others are
    user-defined (always matched whole)."""
    decoder = tc.get("added_tokens_decoder") or {}
    for key, data in decoder.items():
        try:
            i, text = int(key), str(data["content"])
        except (ValueError, KeyError, TypeError):
            raise QuantizeError(f"tokenizer_config.json: bad added_tokens_decoder entry {key!r}",
                                _FIX) from None
        if not 0 <= i < len(v.tokens):
            continue  # ids beyond the vocabulary are not in the model
        if v.types[i] == UNKNOWN:
            continue
        v.tokens[i] = text
        v.types[i] = CONTROL if data.get("special") else USER_DEFINED
        v.scores[i] = -1000.0
    for role in ("bos", "eos", "unk", "pad"):
        tok = tc.get(f"{role}_token")
        text = tok.get("content") if isinstance(tok, dict) else tok
        if isinstance(text, str) and (i := v.token_id(text)) is not None:
            v.special[role] = i
    if isinstance(tc.get("add_bos_token"), bool):
        v.add_bos = tc["add_bos_token"]
    if isinstance(tc.get("add_eos_token"), bool):
        v.add_eos = tc["add_eos_token"]


def read_vocab(directory: Path, hp: HParams) -> Vocab:
    """The checkpoint's vocabulary, padded to the embedding's ``vocab_size`` rows."""
    if (directory / "tokenizer.model").is_file():
        v = _from_sentencepiece(directory / "tokenizer.model")
    elif (directory / "tokenizer.json").is_file():
        v = _from_tokenizer_json(directory / "tokenizer.json")
    else:
        raise QuantizeError(f"missing tokenizer: {directory} has neither tokenizer.model nor "
                            "tokenizer.json", "copy the tokenizer files of the checkpoint into it")
    _apply_tokenizer_config(v, _read_json(directory / "tokenizer_config.json"))
    # config.json's ids are what the model was trained with; they win over tokenizer defaults.
    for role, i in (("bos", hp.bos_token_id), ("eos", hp.eos_token_id), ("pad", hp.pad_token_id)):
        if i is not None:
            v.special[role] = i
    if len(v.tokens) > hp.vocab_size:
        raise QuantizeError(f"the tokenizer has {len(v.tokens)} tokens but the model's embedding "
                            f"has only vocab_size = {hp.vocab_size} rows",
                            "the tokenizer does not belong to this checkpoint")
    for k in range(len(v.tokens), hp.vocab_size):  # rows the tokenizer never produces
        v.tokens.append(f"[PAD{k}]")
        v.scores.append(-1000.0)
        v.types.append(UNUSED)
    for role, i in list(v.special.items()):
        if not 0 <= i < len(v.tokens):
            raise QuantizeError(f"{role} token id {i} is outside the vocabulary of "
                                f"{len(v.tokens)} tokens", _FIX)
    for role, (_, text) in ROLE_TOKENS.items():
        if (i := v.token_id(text)) is not None:
            v.special[role] = i
    return v


def write_vocab(w: gguf.GGUFWriter, v: Vocab) -> None:
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(v.tokens)
    w.add_token_scores(v.scores)
    w.add_token_types(v.types)
    w.add_add_space_prefix(v.add_space_prefix)
    w.add_remove_extra_whitespaces(v.remove_extra_whitespaces)
    w.add_add_bos_token(v.add_bos)
    w.add_add_eos_token(v.add_eos)
    for role, key in ID_KEYS.items():
        if role in v.special:
            w.add_uint32(key, v.special[role])
    for role, (key, _) in ROLE_TOKENS.items():
        if role in v.special:
            w.add_uint32(key, v.special[role])
