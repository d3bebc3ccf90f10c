"""Post-processor ``suffix_overlap``: trim the end of a suggestion that the suffix already holds.

Two checks, in order:

1. **Within the line.** When the cursor's line goes on after the cursor, the longest tail of
   the suggestion's last line that equals the start of that rest of line (whitespace ignored)
   is removed: suggestion ``foo(a, b))`` before ``)`` → ``foo(a, b)``; ``a, b`` before
   ``b)`` → ``a, ``.
2. **Whole lines.** The suggestion's last non-blank lines that equal the first non-blank lines
   after the cursor's line (same indentation, runs of whitespace and trailing whitespace
   ignored) are removed, with the blank lines before them.

Either trim is made only when it is safe: an overlap that starts or ends inside a word
(``items`` before ``s[0]``) is a coincidence, not a duplicate; and nothing is removed that the
kept part needs — the closer of a bracket the kept part opened, a closer the prefix needs and
the suffix does not give (:func:`~.bracket_balance.cut_is_safe`), or the end of a string or
comment the kept part began. So ``len(x)`` before ``)`` keeps its ``)``, and a ``}`` closing
the suggestion's own block stays even when the next line of the suffix is ``}`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from .base import SuggestionContext, cut_before, indent_width, line_starts
from .bracket_balance import cut_is_safe

MAX_SUFFIX_LINES = 16
"""Suffix lines compared with the end of the suggestion."""


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def trim_line_overlap(text: str, ctx: SuggestionContext) -> str:
    """Check 1: the last line's tail against the rest of the cursor's line."""
    rest = ctx.rest_of_line
    if not rest.strip():
        return text
    line_start = text.rfind("\n") + 1
    chars = [(i, c) for i, c in enumerate(text[line_start:], line_start) if not c.isspace()]
    tail = "".join(c for _, c in chars)
    head_pos = [i for i, c in enumerate(rest) if not c.isspace()]
    head = "".join(rest[i] for i in head_pos)
    for m in range(min(len(tail), len(head)), 0, -1):
        if tail[len(tail) - m:] != head[:m]:
            continue
        cut = chars[len(chars) - m][0]
        before = text[cut - 1] if cut else ctx.cursor_line[-1:]
        after = rest[head_pos[m - 1] + 1:head_pos[m - 1] + 2]
        if (_is_word(head[0]) and before and _is_word(before)) or (
                _is_word(head[m - 1]) and after and _is_word(after)):
            continue
        if not cut_is_safe(text, cut, ctx):
            continue
        out = text[:cut]
        return out.rstrip(" \t") if rest[0] in " \t" else out
    return text


def _norm(line: str) -> tuple[int, str]:
    """A line as compared: indentation width and its words, whitespace runs collapsed."""
    return indent_width(line), " ".join(line.split())


def trim_duplicate_lines(text: str, ctx: SuggestionContext) -> str:
    """Check 2: the last non-blank lines against the first non-blank lines after the cursor's
    line."""
    wanted = list(islice((_norm(line) for line in ctx.suffix.split("\n", MAX_SUFFIX_LINES * 4)[1:]
                          if line.strip()), MAX_SUFFIX_LINES))
    if not wanted:
        return text
    lines = text.split("\n")
    first = 0 if ctx.cursor_line_blank else 1
    ours = [(i, _norm(ctx.cursor_line + line if i == 0 else line))
            for i, line in enumerate(lines) if i >= first and line.strip()]
    starts = line_starts(lines)
    for m in range(min(len(ours), len(wanted)), 0, -1):
        if [n for _, n in ours[-m:]] != wanted[:m]:
            continue
        i = ours[-m][0]
        cut = cut_before(text, starts[i]) if i else 0
        if cut_is_safe(text, cut, ctx):
            return text[:cut]
    return text


@dataclass(frozen=True)
class SuffixOverlap:
    name: str = "suffix_overlap"

    def apply(self, text: str, ctx: SuggestionContext) -> str:
        return trim_duplicate_lines(trim_line_overlap(text, ctx), ctx)
