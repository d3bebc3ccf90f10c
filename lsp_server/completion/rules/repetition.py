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
"""Characters the repeated run must cover, so short runs such as ``----`` never count."""


def _inline_cut(text: str, line_start: int) -> int | None:
    """Cut for a chunk looping at the end of the line starting at ``line_start``."""
    line = text[line_start:]
    n = len(line)
    if n < MIN_INLINE_SPAN:
        return None
    for p in range(1, min(MAX_INLINE_PERIOD, n // MIN_INLINE_REPEATS) + 1):
        chunk = line[n - p:]
        if line[n - 2 * p:n - p] != chunk or max(p * MIN_INLINE_REPEATS, MIN_INLINE_SPAN) > n:
            continue
        if not any(c.isalpha() for c in chunk):
            continue
        start = n - p
        while start >= p and line[start - p:start] == chunk:
            start -= p
        if (n - start) // p >= MIN_INLINE_REPEATS and n - start >= MIN_INLINE_SPAN:
            return line_start + start + p
    return None


@dataclass(frozen=True)
class Repetition:
    name: str = "repetition"

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        starts = line_starts(text)
        inline = _inline_cut(text, starts[-1])
        if len(starts) == 1:
            return inline
        lines = text.split("\n")
        complete = lines[:-1]
        user_line = not ctx.cursor_line_blank
        prior = ctx.prefix_tail_lines[-2 * MAX_BLOCK:]
        seq = list(prior)
        seq.append((ctx.cursor_line + complete[0]).rstrip())
        seq.extend(line.rstrip() for line in complete[1:])
        k0 = len(prior)  # index of the suggestion's first line in seq
        # Repetitions must end at or after the first line the model wrote on its own.
        min_end = k0 + 1 if user_line or not complete[0].strip() else k0
        # The earliest offset the cut may take: the user's part of the line is not ours.
        floor = starts[1] - 1 if user_line else 0

        ids: dict[str, int] = {}
        code = [ids.setdefault(s, len(ids)) for s in seq]
        real = [nontrivial(s) for s in seq]
        n = len(seq)
        best: int | None = None

        def offset(j: int) -> int:  # start of seq line j in text
            return starts[j - k0] if j > k0 else 0

        for k in range(1, MAX_BLOCK + 1):
            run = 0
            for i in range(max(0, min_end - 2 * k), n - k):
                run = run + 1 if code[i] == code[i + k] else 0
                if k == 1:
                    long_line = run >= 1 and len(seq[i].strip()) >= LONG_LINE
                    hit = real[i] and (run >= 2 or long_line)
                    end, copy2 = i + 1, i + 1
                    if run >= 2 and not long_line:
                        copy2 = i  # three in a row: keep the first, cut from the second
                else:
                    hit = run >= k and any(real[i - k + 1:i + 1])
                    end, copy2 = i + k, i + 1
                if hit and end >= min_end:
                    at = max(cut_before(text, offset(copy2)) if copy2 > k0 else 0, floor)
                    if best is None or at < best:
                        best = at
                    break
        if inline is not None and (best is None or inline < best):
            best = inline
        return best
