"""Prompts as text for engines that tokenize on their side (remote engines).

:func:`~lsp_server.prompt.assemble.assemble` works on token ids. A remote engine takes text and
the daemon may not have the remote model's tokenizer, so budgets are counted in characters with
a conservative characters-per-token estimate, and a character-level stand-in tokenizer lets the
same assembler lay out a raw FIM prompt (sentinels, repository context, truncation at line
boundaries) that is then rendered back to text.
"""

from __future__ import annotations

import math

# Code tokenizes to about 3.5–4.5 characters per token with the vocabularies of current code
# models (Qwen2.5-Coder, StarCoder2, CodeGemma, Gemma 3); 3 keeps estimated prompts under the
# remote context window for denser text too.
CHARS_PER_TOKEN = 3.0


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text`` for an unknown tokenizer (errs on the high side)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


class EstimatingTokenizer:
    """Counts tokens by :func:`estimate_tokens` for repository-context budgeting.

    ``tokenize`` returns placeholder ids of the estimated length: only the count is meaningful.
    """

    bos_id: int | None = None
    add_bos = False

    def tokenize(self, text: str) -> list[int]:
        return [0] * estimate_tokens(text)

    def token_id(self, piece: str) -> int | None:
        return None


class TextTokenizer:
    """Character-level stand-in tokenizer: one id per code point, sentinels as negative ids.

    With it, ``assemble()`` budgets characters and :meth:`render` turns the result into the
    prompt text, sentinels spelled as the template writes them.
    """

    bos_id: int | None = None
    add_bos = False
    chars_per_token = 1.0
    """One id per character: budgets, and the sticky cut's stride, are characters already."""

    def __init__(self) -> None:
        self._pieces: dict[int, str] = {}
        self._ids: dict[str, int] = {}

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def token_id(self, piece: str) -> int | None:
        # Every spelling is "in the vocabulary": the remote server knows its own sentinels. A
        # leading "▁" is SentencePiece's space marker, a vocabulary artifact and not prompt text.
        if piece.startswith("\u2581"):
            return None
        tid = self._ids.get(piece)
        if tid is None:
            tid = self._ids[piece] = -(len(self._ids) + 1)
            self._pieces[tid] = piece
        return tid

    def render(self, tokens: list[int]) -> str:
        return "".join(self._pieces[t] if t < 0 else chr(t) for t in tokens)
