"""Stop rule ``repetition``: the suggestion has started repeating itself or the code above it.

The suggestion's complete lines are read after the last lines of the prefix, as one sequence
of right-stripped lines (indentation counts). A repetition is

* the same non-trivial line three times in a row, or twice in a row when it is long
  (:data:`LONG_LINE` characters: a long line is never legitimately written twice running);
* a block of 2 to :data:`MAX_BLOCK` lines, with at least one non-trivial line, immediately
  written again;
* a line ending in one chunk (with a letter) written :data:`MIN_INLINE_REPEATS` times or more
  running (``self.foo.foo.foo.foo…``), checked on the line being generated.

The first copy may lie in the prefix, which is how re-emitting the lines right before the
cursor is caught. Only repetitions that end in the suggestion's own text count: the user's
repeated lines and the user's own part of the cursor's line are never blamed. The cut keeps the
first copy and removes the rest (for a block starting at the suggestion's first line, that is
everything).

Non-trivial (:func:`~.base.nontrivial`): a letter and at least four characters, so brackets,
``end`` and number rows such as ``[0, 0, 0],`` may repeat freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .base import SuggestionContext, cut_before, line_starts, nontrivial

MAX_BLOCK = 8
"""Longest block of lines checked for an immediate repeat."""
LONG_LINE = 24
"""Stripped length from which two identical consecutive lines are a repetition."""
MIN_INLINE_REPEATS = 8
"""Copies of a chunk at the end of a line that make an in-line loop."""
MAX_INLINE_PERIOD = 40
"""Longest chunk checked for an in-line loop."""
MIN_INLINE_SPAN = 24
"""Characters the repeated run must cover, so short runs (``a.a.a.a.a.a.a.a``) never count."""


def looping_tails(line: str, min_repeats: int = MIN_INLINE_REPEATS
                  ) -> Iterator[tuple[int, int]]:
    """(period, start) for every chunk of up to :data:`MAX_INLINE_PERIOD` characters, with a
    letter, that ends ``line`` at least twice running: ``start`` is where its run of copies
    begins. Only chunks short enough for ``min_repeats`` copies to fit in ``line`` are tried.
    Shared by the exact in-line loop here and the ones of :mod:`.progression` and
    :mod:`.inline_loop`, which pass the line with its literals masked."""
    n = len(line)
    for p in range(1, min(MAX_INLINE_PERIOD, n // min_repeats) + 1):
        chunk = line[n - p:]
        if line[n - 2 * p:n - p] != chunk or not any(c.isalpha() for c in chunk):
            continue
        start = n - p
        while start >= p and line[start - p:start] == chunk:
            start -= p
        yield p, start


def _inline_cut(text: str, line_start: int) -> int | None:
    """Cut for a chunk looping at the end of the line starting at ``line_start``."""
    line = text[line_start:]
    n = len(line)
    if n < MIN_INLINE_SPAN:
        return None
    for p, start in looping_tails(line):
        if (n - start) // p >= MIN_INLINE_REPEATS and n - start >= MIN_INLINE_SPAN:
            return line_start + start + p
    return None


def _second_copy(seq: list[str], j: int, k: int) -> int | None:
    """Where the second copy starts if line ``j`` ends a repetition of period ``k``."""
    line = seq[j]
    if k == 1:
        if j >= 2 and seq[j - 2] == line and nontrivial(line):
            return j - 1  # three in a row: keep the first
        if len(line.strip()) >= LONG_LINE and nontrivial(line):
            return j
        return None
    if j - 2 * k + 1 < 0 or seq[j - k + 1:j + 1] != seq[j - 2 * k + 1:j - k + 1]:
        return None
    return j - k + 1 if any(nontrivial(x) for x in seq[j - k + 1:j + 1]) else None


@dataclass(frozen=True)
class Repetition:
    name: str = "repetition"

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        first_break = text.find("\n")
        best = _inline_cut(text, text.rfind("\n") + 1)
        if first_break < 0:
            return best
        lines = text.split("\n")
        complete = lines[:-1]
        user_line = not ctx.cursor_line_blank
        prior = ctx.prefix_tail_lines[-2 * MAX_BLOCK:]
        seq = [*prior, (ctx.cursor_line + complete[0]).rstrip()]
        seq.extend(line.rstrip() for line in complete[1:])
        k0 = len(prior)  # index of the suggestion's first line in seq
        # Repetitions must end at or after the first line the model wrote on its own, and the
        # cut must not reach into the user's part of the cursor's line.
        min_end = k0 + 1 if user_line or not complete[0].strip() else k0
        floor = first_break if user_line else 0
        if len(set(seq)) == len(seq):
            return best  # no line occurs twice: the common case, decided in C
        starts = line_starts(lines)
        seen: dict[str, list[int]] = {}
        for j, line in enumerate(seq):
            earlier = seen.setdefault(line, [])
            if j >= min_end:
                for p in reversed(earlier):  # nearest first: the shortest period
                    k = j - p
                    if k > MAX_BLOCK:
                        break
                    copy2 = _second_copy(seq, j, k)
                    if copy2 is None:
                        continue
                    at = max(cut_before(text, starts[copy2 - k0]) if copy2 > k0 else 0, floor)
                    if best is None or at < best:
                        best = at
            earlier.append(j)
        return best
