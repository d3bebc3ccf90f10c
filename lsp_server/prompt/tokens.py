"""The tokenizer interface the prompt code needs, and its llama.cpp implementation (which takes
an already loaded llama.cpp model, so this module imports no llama.cpp itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..models.gguf_info import ModelInfo


class Tokenizer(Protocol):
    """What prompt assembly needs from a model's tokenizer."""

    bos_id: int | None
    """Beginning-of-sequence token, or None when the model has none."""
    add_bos: bool
    """Whether the model expects BOS at the start of every prompt."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text: no BOS, special-token text NOT parsed.

        User code that contains "<|fim_middle|>" must stay text, never become a sentinel.
        """
        ...

    def token_id(self, piece: str) -> int | None:
        """Id of the vocabulary entry whose text is exactly ``piece`` (special tokens)."""
        ...


class LlamaTokenizer:
    """:class:`Tokenizer` backed by llama.cpp and the GGUF vocabulary: the daemon's, and the
    trainer's for GGUF-only models (``model/tokenizer.py``), so both tokenize alike."""

    def __init__(self, llama: Any, info: "ModelInfo") -> None:
        self._llama = llama
        self._info = info
        self.bos_id: int | None = info.special_ids.get("bos")
        self.add_bos = info.add_bos

    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def token_id(self, piece: str) -> int | None:
        return self._info.token_id(piece)
