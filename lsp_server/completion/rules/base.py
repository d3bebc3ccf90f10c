"""The context every rule sees, the two rule protocols, and small shared helpers.

Stop rules run after every generated token, so whatever depends only on the document (the
cursor's line, the lines around it, the brackets the prefix leaves open) is computed once per
context and cached on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from typing import Protocol

from .languages import OPENER_OF, LangSpec, spec_for
from .lexer import SCAN_WINDOW, Scan, open_brackets, prefix_window, scan, unmatched_closers

PREFIX_TAIL_LINES = 16
"""Lines before the cursor's line that the repetition rule compares the suggestion with."""
TAB_WIDTH = 4
"""Columns per tab when comparing indentation (any fixed width works for consistent files)."""
RULE_WINDOW = 4096
"""Characters of the document either side of the cursor that the rules see."""


@dataclass(frozen=True)
class SuggestionContext:
    """Where the suggestion goes: the document around the cursor and the mode."""

    prefix: str
    """Document text before the cursor (may be truncated to the last few KB)."""
    suffix: str
    """Document text after the cursor (may be truncated)."""
    language: str = ""
    """LSP languageId ("python", "typescript", …), "" if unknown."""
    single_line: bool = False
    """The suggestion ends at the end of the line (see ``decide_single_line``)."""

    @classmethod
    def around(cls, prefix: str, suffix: str, language: str = "",
               single_line: bool = False) -> "SuggestionContext":
        """The context of a cursor between ``prefix`` and ``suffix``: the rules look at most
        ``RULE_WINDOW`` characters either side, so longer texts are cut to that."""
        return cls(prefix=prefix[-RULE_WINDOW:], suffix=suffix[:RULE_WINDOW], language=language,
                   single_line=single_line)

    # --- derived, computed once (cached_property writes the instance dict, which a frozen
    # dataclass allows; equality and hashing still use the four fields only) ---------------
    @cached_property
    def spec(self) -> LangSpec:
        return spec_for(self.language)

    @cached_property
    def cursor_line(self) -> str:
        """The cursor's line up to the cursor."""
        return self.prefix[self.prefix.rfind("\n") + 1:]

    @cached_property
    def cursor_line_blank(self) -> bool:
        return not self.cursor_line.strip()

    @cached_property
    def rest_of_line(self) -> str:
        """The cursor's line after the cursor."""
        end = self.suffix.find("\n")
        return (self.suffix if end < 0 else self.suffix[:end]).rstrip("\r")

    @cached_property
    def prefix_tail_lines(self) -> tuple[str, ...]:
        """The complete lines before the cursor's line (right-stripped), nearest last."""
        start = self.prefix.rfind("\n")
        if start < 0:
            return ()
        # Look back only as far as needed: the last PREFIX_TAIL_LINES newlines.
        pos = start
        for _ in range(PREFIX_TAIL_LINES):
            pos = self.prefix.rfind("\n", 0, pos)
            if pos < 0:
                break
        lines = self.prefix[pos + 1:start].split("\n")
        return tuple(line.rstrip() for line in lines)

    @cached_property
    def suffix_next_line(self) -> str | None:
        """The first non-blank line after the cursor's line (right-stripped), if any."""
        for line in self.suffix.split("\n", 64)[1:64]:
            if line.strip():
                return line.rstrip()
        return None

    @cached_property
    def prefix_scan(self) -> Scan:
        return scan(prefix_window(self.prefix), self.spec)

    @cached_property
    def suffix_scan(self) -> Scan:
        """The suffix, read as the continuation of the prefix (the cursor may be in a string)."""
        return scan(self.suffix[:SCAN_WINDOW], self.spec, self.prefix_scan.state)

    @cached_property
    def needed_closers(self) -> tuple[str, ...]:
        """Openers of the prefix that the suffix does not close, outermost first.

        Each unmatched closer of the suffix takes the innermost still-open opener of its own
        type: with prefix ``{ … foo(`` and suffix ``… }`` the ``}`` closes the ``{`` and the
        ``(`` remains needed. A truncated prefix loses outer openers; their closers in the
        suffix then find nothing and are ignored.
        """
        need = [ch for _, ch in open_brackets(self.prefix_scan.brackets)]
        for _, closer in unmatched_closers(self.suffix_scan.brackets):
            opener = OPENER_OF[closer]
            for i in range(len(need) - 1, -1, -1):
                if need[i] == opener:
                    del need[i]
                    break
        return tuple(need)


class StopRule(Protocol):
    """Cuts a suggestion while it is being generated."""

    name: str

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        """Called after every token with the whole suggestion so far. Return the index at which
        the suggestion must end (the text is cut to text[:index] and generation stops), or None
        to continue."""
        ...


class PostProcessor(Protocol):
    """Cleans a finished suggestion."""

    name: str

    def apply(self, text: str, ctx: SuggestionContext) -> str:
        """Clean the finished suggestion; return "" to drop it."""
        ...


# --- helpers shared by the rules ----------------------------------------------------------

_NONTRIVIAL = re.compile(r"[A-Za-z]")
MIN_NONTRIVIAL = 4
"""A line needs a letter and this many non-blank characters to count as content (``}``,
``end``, ``[0, 0],`` do not)."""


def indent_width(line: str) -> int:
    """Columns of leading whitespace, tabs counted as :data:`TAB_WIDTH`."""
    width = len(line) - len(line.lstrip(" \t"))
    if "\t" in line[:width]:
        return len(line[:width].expandtabs(TAB_WIDTH))
    return width


def nontrivial(line: str) -> bool:
    """True for a line with real content, as opposed to blank, bracket-only or keyword-only."""
    s = line.strip()
    return len(s) >= MIN_NONTRIVIAL and _NONTRIVIAL.search(s) is not None


def line_starts(lines: list[str]) -> list[int]:
    """Offset of the start of every line, for ``lines = text.split("\\n")``."""
    return [0, *accumulate(len(line) + 1 for line in lines[:-1])]


def cut_before(text: str, offset: int) -> int:
    """Index to cut at so that the text ends before ``offset`` without trailing whitespace
    (the newline and blank lines before an excluded line go with it)."""
    return len(text[:offset].rstrip())
