"""Post-processors ``trailing_whitespace`` and ``empty``."""

from __future__ import annotations

from dataclasses import dataclass

from .base import SuggestionContext

_BLANK = " \t\r"


@dataclass(frozen=True)
class TrailingWhitespace:
    """Strip trailing spaces and tabs from every line and the blank lines and newlines at the
    end; the suggestion's own inner blank lines stay (as empty lines).

    Exception: when code follows the cursor on its line, the whitespace at the very end of the
    suggestion is what separates it from that code (``foo(a, `` before ``b)``), so it is kept.
    """

    name: str = "trailing_whitespace"

    def apply(self, text: str, ctx: SuggestionContext) -> str:
        end = ""
        if ctx.rest_of_line.strip():
            body = text.rstrip(_BLANK + "\n")
            text, end = body, text[len(body):]
        lines = [line.rstrip(_BLANK) for line in text.split("\n")]
        return "\n".join(lines).rstrip("\n") + end


@dataclass(frozen=True)
class Empty:
    """Drop a suggestion that is empty or whitespace only: there is nothing to show, and the
    pipeline reports which rule emptied it."""

    name: str = "empty"

    def apply(self, text: str, ctx: SuggestionContext) -> str:
        return text if text.strip() else ""
