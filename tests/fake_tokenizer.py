"""A character-level tokenizer for unit tests of prompt assembly (one token per character)."""

from __future__ import annotations

from lsp_server.prompt.templates import TEMPLATES

SPECIAL_BASE = 100_000


class CharTokenizer:
    """Each character is one token (its code point); special tokens come from a table."""

    def __init__(self, specials: list[str] | None = None, *, bos: bool = True) -> None:
        if specials is None:  # every sentinel of every family
            specials = sorted({s for t in TEMPLATES.values() for sp in t.sentinels.values()
                               for s in sp})
        self.specials = {text: SPECIAL_BASE + i for i, text in enumerate(specials)}
        self.names = {v: k for k, v in self.specials.items()}
        self.bos_id: int | None = SPECIAL_BASE - 1
        self.add_bos = bos
        self.calls = 0
        self.chars = 0
        """Characters tokenized so far: the cost of prompt assembly."""

    def tokenize(self, text: str) -> list[int]:
        self.calls += 1
        self.chars += len(text)
        return [ord(c) for c in text]

    def token_id(self, piece: str) -> int | None:
        return self.specials.get(piece)

    def render(self, tokens: list[int]) -> str:
        """Readable prompt: specials as their text, BOS as <BOS>."""
        out = []
        for t in tokens:
            if t == self.bos_id:
                out.append("<BOS>")
            elif t in self.names:
                out.append(self.names[t])
            else:
                out.append(chr(t))
        return "".join(out)
