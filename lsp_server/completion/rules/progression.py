"""Stop rule ``progression``: the suggestion has started counting.

A small model that has written ``if n == 1: return 1`` and ``if n == 2: return 2`` often goes
on to ``if n == 3`` and never stops by itself; every line differs, so the exact-repeat rule
(:mod:`.repetition`) cannot see it, and the suggestion runs to the token limit. A progression is

* a block of 1 to :data:`MAX_BLOCK` lines, with at least one non-trivial line, written
  :data:`COPIES` times running by the suggestion, the copies alike but for their literals
  (numbers and short strings), and every literal that changes from copy to copy *counting*: a
  number moving by the same non-zero step each time, or a one-character string moving by the
  same step through the alphabet (``"a"``, ``"b"``, ``"c"``). The cut keeps ``COPIES - 1``
  copies: short progressions are common in real code (assertions over indices, numbered
  constants), so the user still gets a few and can accept them to ask for more;
* on the line being generated, a chunk alike :data:`~.repetition.MIN_INLINE_REPEATS` times or
  more at the end of the line and counting (``depth == 0 or depth == 1 or depth == 2 or …``);
  the cut keeps the line up to the second value (``depth == 0 or depth == 1``), whatever phase
  the chunk was found in, much as the repetition rule keeps one copy of an exact in-line loop.

Only the suggestion's own lines count: a table the user wrote above the cursor is theirs to
continue. Copies written verbatim are the repetition rule's business and are left to it.

:data:`COPIES` is the smallest count at which the rule cuts the true continuation of at most
0.1 % of the cursor positions in the training corpus's held-out files (``bench/loop_rules.py
heldout``; the measurement is in docs/quality.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .base import SuggestionContext, cut_before, line_starts, nontrivial
from .repetition import MIN_INLINE_REPEATS, MIN_INLINE_SPAN, looping_tails

COPIES = 5
"""Copies of a block that make a progression (the cut keeps one fewer)."""
MAX_BLOCK = 8
"""Longest block of lines checked."""
MAX_STRING = 12
"""Longest string literal (between its quotes) that is masked like a number."""

# A number is a literal only on its own: the digits of ``f1`` or ``j_2`` belong to a name, and
# enumerated names (``f1, f2, f3``: parameters, fixtures) are written on purpose.
_LITERAL = re.compile(r"(?<!\w)\d+|'[^'\\\n]{0,%d}'|\"[^\"\\\n]{0,%d}\""
                      % (MAX_STRING, MAX_STRING))


@lru_cache(maxsize=4096)
def _masked(line: str) -> tuple[str, tuple[int, ...]]:
    """``line`` with every literal replaced by a placeholder (``0`` for a number, ``''`` for a
    string), and for every index of the masked text the index of the original it came from
    (one more entry at the end: the original's length)."""
    out: list[str] = []
    where: list[int] = []
    pos = 0
    for m in _LITERAL.finditer(line):
        out.append(line[pos:m.start()])
        where.extend(range(pos, m.start()))
        placeholder = "0" if m.group()[0].isdigit() else "''"
        out.append(placeholder)
        where.extend([m.start()] * len(placeholder))
        pos = m.end()
    out.append(line[pos:])
    where.extend(range(pos, len(line) + 1))
    return "".join(out), tuple(where)


def _value(literal: str) -> int | None:
    """A literal as a point on a counting scale: a number, or a one-character string's code."""
    if literal[0].isdigit():
        return int(literal)
    return ord(literal[1]) if len(literal) == 3 else None


def counting(copies: list[str]) -> bool:
    """True when the literals that differ between ``copies`` (texts alike but for their
    literals) all count: each moves by one constant non-zero step from copy to copy."""
    columns = list(zip(*(_LITERAL.findall(c) for c in copies)))
    if not columns or any(len(_LITERAL.findall(c)) != len(columns) for c in copies):
        return False
    changed = False
    for column in columns:
        if len(set(column)) == 1:
            continue
        values = [_value(lit) for lit in column]
        if None in values:
            return False
        steps = {b - a for a, b in zip(values, values[1:])}  # type: ignore[operator]
        if len(steps) != 1 or 0 in steps:
            return False
        changed = True
    return changed


def _block_run(seq: list[str], masks: list[str], copies: int) -> int | None:
    """Index in ``seq`` of the first line of the ``copies``-th copy of the earliest counting
    block, or None."""
    n = len(seq)
    best: int | None = None
    for k in range(1, MAX_BLOCK + 1):
        need = (copies - 1) * k  # lines equal (by mask) to the line k below them
        if need + k > n:
            break
        same = 0  # consecutive i with masks[i] == masks[i + k], ending at i
        for i in range(n - k):
            same = same + 1 if masks[i] == masks[i + k] else 0
            if same < need:
                continue
            s = i - need + 1
            if best is not None and s + need >= best:
                break
            if not any(nontrivial(x) for x in seq[s:s + k]):
                continue
            blocks = ["\n".join(seq[s + c * k:s + (c + 1) * k]) for c in range(copies)]
            if len(set(blocks)) == copies and counting(blocks):
                best = s + need
                break
    return best


def alike_chunk_cut(line: str, min_repeats: int, counts: bool) -> int | None:
    """Where to cut ``line`` when a chunk, alike but for its literals and not all identical,
    ends it ``min_repeats`` times or more, its literals counting (``counts``) or not: after the
    second copy's last changed literal. Shared with :mod:`.inline_loop` (``counts=False``)."""
    if len(line) < MIN_INLINE_SPAN:
        return None
    text, where = _masked(line)
    n = len(text)
    for p, start in looping_tails(text, min_repeats):
        repeats = (n - start) // p
        if repeats < min_repeats or where[n] - where[start] < MIN_INLINE_SPAN:
            continue
        pieces = [line[where[start + i * p]:where[start + (i + 1) * p]] for i in range(repeats)]
        if len(set(pieces)) > 1 and counting(pieces) == counts:
            return where[start + p] + _after_change(pieces[0], pieces[1])
    return None


def _after_change(first: str, second: str) -> int:
    """Offset in ``second`` just after its last literal that differs from ``first``'s (the copy
    is cut there, whatever phase the chunk was found in: ``… == 0 or … == 1``)."""
    olds = list(_LITERAL.finditer(first))
    changed = [m for m, old in zip(_LITERAL.finditer(second), olds) if m.group() != old.group()]
    return changed[-1].end() if changed else 0


@dataclass(frozen=True)
class Progression:
    name: str = "progression"
    copies: int = COPIES

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        last = text.rfind("\n") + 1
        at = alike_chunk_cut(text[last:], MIN_INLINE_REPEATS, counts=True)
        best = None if at is None else last + at
        if last == 0:
            return best
        lines = text.split("\n")
        # The suggestion's complete lines; the first one read with the user's part of the line.
        seq = [(ctx.cursor_line + lines[0]).rstrip(), *(x.rstrip() for x in lines[1:-1])]
        if len(seq) < self.copies:
            return best
        masks = [_masked(x)[0] for x in seq]
        if len(set(masks)) == len(masks):
            return best  # no two lines alike: the common case
        at = _block_run(seq, masks, self.copies)
        if at is not None:
            cut = cut_before(text, line_starts(lines)[at])
            best = cut if best is None else min(best, cut)
        return best
