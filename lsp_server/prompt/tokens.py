"""The tokenizer interface the prompt code needs, independent of llama.cpp."""

from __future__ import annotations

from typing import Protocol


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
