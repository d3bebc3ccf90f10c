"""Stop rule ``suffix_echo``: the suggestion has reached the code that follows the cursor.

In multi-line mode, when a complete line of the suggestion is the first non-blank line after
the cursor's line (same indentation, trailing whitespace ignored), the model has written what
the document already holds, and everything from that line on would be a duplicate: cut before
it. Only non-trivial lines count (a ``}`` or ``end`` may well close the suggestion's own block;
the ``suffix_overlap`` and ``bracket_balance`` post-processors judge those with bracket
awareness). Stopping here, rather than trimming afterwards, saves the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import SuggestionContext, cut_before, line_starts, nontrivial


@dataclass(frozen=True)
class SuffixEcho:
    name: str = "suffix_echo"

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        target = ctx.suffix_next_line
        if (ctx.single_line or target is None or "\n" not in text or not nontrivial(target)
                or target.strip() not in text):
            return None
        lines = text.split("\n")
        first = 0 if ctx.cursor_line_blank else 1
        for i in range(first, len(lines) - 1):  # complete lines only
            line = ctx.cursor_line + lines[i] if i == 0 else lines[i]
            if line.rstrip() == target:
                return cut_before(text, line_starts(lines)[i])
        return None
