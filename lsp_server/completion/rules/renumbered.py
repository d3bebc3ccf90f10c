"""Stop rule ``renumbered``: the suggestion writes a long block again with only its numbers changed.

A small model that has written a helper (``def find_prime(n):`` and its body) often writes it
again as ``def find_prime2(n):``, then ``find_prime3``, until the token limit: the copies differ,
so the exact-repeat rule (:mod:`.repetition`) cannot see them, and they do not count from copy
to copy in every literal (``find_prime`` to ``find_prime2``), so the counting rule
(:mod:`.progression`) does not either. A renumbered copy is

* a block of up to :data:`MAX_BLOCK` lines with at least :data:`MIN_LINES` non-trivial ones,
  written by the suggestion and immediately written again, the two alike once every number
  (with an underscore before it) is removed — in names too: ``find_prime`` and ``find_prime_2``,
  ``x = a[1]`` and ``x = a[2]`` are alike — and not identical (identical copies are the
  repetition rule's).

The cut keeps the first copy. A shorter block looping with new numbers is caught the same way
once two rounds of it hold five non-trivial lines: ten one-line copies keep five, four copies
of a block of three non-trivial lines keep two. The block is checked when its copy's last line
is complete; the copy that is complete first decides (on the whole text as while streaming),
and of blocks whose copies end on the same line the longest.

Only the suggestion's own lines count: a user who copied a test above the cursor may want the
next one written. :data:`MIN_LINES` is the smallest count at which the rule cuts the true
continuation of at most 0.1 % of the cursor positions in the training corpus's held-out files
(``bench/loop_rules.py heldout --rule renumbered``; the table is in docs/quality.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .base import SuggestionContext, cut_before, line_starts, nontrivial

MIN_LINES = 5
"""Non-trivial lines a block needs before one renumbered copy of it is cut."""
MAX_BLOCK = 16
"""Longest block of lines checked."""

_NUMBER = re.compile(r"_?\d+")


@lru_cache(maxsize=4096)
def _unnumbered(line: str) -> str:
    return _NUMBER.sub("", line)


def copy_start(seq: list[str], min_lines: int = MIN_LINES) -> int | None:
    """Index in ``seq`` of the first line of the first renumbered copy, or None."""
    masks = [_unnumbered(x) for x in seq]
    if len(set(masks)) == len(masks):
        return None  # no two lines alike: the common case
    seen: dict[str, list[int]] = {}
    for j, m in enumerate(masks):
        earlier = seen.setdefault(m, [])
        # Periods k with masks[j - k] == masks[j], longest first: the copy that starts earliest.
        for p in earlier:
            k = j - p
            if k > MAX_BLOCK or k < min_lines or j - 2 * k + 1 < 0:
                continue
            first, copy = slice(j - 2 * k + 1, j - k + 1), slice(j - k + 1, j + 1)
            if masks[first] != masks[copy] or seq[first] == seq[copy]:
                continue
            if sum(nontrivial(x) for x in seq[copy]) >= min_lines:
                return j - k + 1
        earlier.append(j)
    return None


@dataclass(frozen=True)
class Renumbered:
    name: str = "renumbered"
    min_lines: int = MIN_LINES

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        lines = text.split("\n")
        if len(lines) <= 2 * self.min_lines:
            return None
        # The suggestion's complete lines; the first one read with the user's part of the line.
        seq = [(ctx.cursor_line + lines[0]).rstrip(), *(x.rstrip() for x in lines[1:-1])]
        at = copy_start(seq, self.min_lines)
        return None if at is None else cut_before(text, line_starts(lines)[at])
