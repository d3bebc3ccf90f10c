"""Stop rule ``inline_loop``: the line being written repeats one chunk with only its literals
changing.

A small model can run one line to the token limit: ``if s[i] in "a" or s[i] in "e" or s[i] in
"t" or …`` with letters in no order, or ``x == 'red' or x == 'blue' or x == 'red' or …``. The
chunks differ, so the repetition rule's in-line check (exact copies, :mod:`.repetition`) does not
see them, and their literals do not count, so the progression rule's (:mod:`.progression`) does
not either. An in-line loop is

* a chunk of up to :data:`~.repetition.MAX_INLINE_PERIOD` characters, with a letter, that ends
  the line being generated :data:`MIN_REPEATS` times or more running, the copies alike once
  their literals (numbers and short strings) are masked, not all identical and not counting
  (those are the other two rules'), over at least :data:`~.repetition.MIN_INLINE_SPAN`
  characters.

The cut keeps the line up to the second value (``if s[i] in "a" or s[i] in "e"``), whatever
phase the chunk was found in, as the progression rule's in-line cut does. Only the line being
generated is checked, and only the model's part of it, so the user's part of the cursor's line
is never cut. :data:`MIN_REPEATS` is the smallest count at which the rule cuts the true
continuation of at most 0.1 % of the cursor positions in the training corpus's held-out files
(``bench/loop_rules.py heldout --rule inline_loop``; the table is in docs/quality.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import SuggestionContext
from .progression import alike_chunk_cut

MIN_REPEATS = 5
"""Copies of the chunk that make an in-line loop."""


def loop_cut(line: str, min_repeats: int = MIN_REPEATS) -> int | None:
    """Where to cut ``line`` when a chunk loops at its end with its literals changing, not
    counting (after the second copy's last changed literal), or None."""
    return alike_chunk_cut(line, min_repeats, counts=False)


@dataclass(frozen=True)
class InlineLoop:
    name: str = "inline_loop"
    min_repeats: int = MIN_REPEATS

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        last = text.rfind("\n") + 1
        at = loop_cut(text[last:], self.min_repeats)
        return None if at is None else last + at
