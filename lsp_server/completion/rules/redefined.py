"""Stop rule ``redefined``: the suggestion writes again a definition that stands above the cursor.

A small model that has run out of ideas inside a function often starts over: it writes the
function's own ``def`` line again, then its docstring line by line, then a body, until the token
limit. Often the definition is the one the cursor is in, so the copy is far from the cursor (a
docstring away) and the repetition rule (:mod:`.repetition`), which compares the suggestion with
the last lines above the cursor and with itself, does not see it. A copied definition is

* a run of :data:`MIN_LINES` non-trivial lines written by the suggestion, the first of them a
  definition (:data:`DEFINITION`: ``def``, ``class``, ``function``, ``fn``…), that stands
  line for line in the prefix (the lines compared without their indentation: a method copied
  as a function is a copy too; blank and bracket-only lines do not count).

The cut removes the whole copy, from its definition line. Real code copies lines from above
all the time — a test's set-up, a class's ``__init__`` — which is why the run must start at a
definition and be long: :data:`MIN_LINES` is the smallest count at which the rule cuts the true
continuation of at most 0.1 % of the cursor positions in the training corpus's held-out files
(``bench/loop_rules.py heldout --rule redefined``; the table is in docs/quality.md). A
definition shorter than that is not caught unless the copy goes on into what follows it.

Only the suggestion's own lines count: the cursor's line is the user's when something stands
on it before the cursor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .base import SuggestionContext, cut_before, line_starts, nontrivial

MIN_LINES = 7
"""Non-trivial lines of a definition copied from the prefix before the copy is cut."""
DEFINITION = re.compile(
    r"(?:(?:export|pub|public|private|protected|static|async|default)\s+)*"
    r"(?:def|class|function|fn|func|interface|struct|enum|trait|impl|module|sub)\b")
"""A stripped line that starts a definition, in the context languages' keywords."""


@lru_cache(maxsize=64)
def definition_runs(prefix: str, min_lines: int, starts: re.Pattern[str] = DEFINITION
                    ) -> frozenset[tuple[str, ...]]:
    """Every run of ``min_lines`` non-trivial lines of the prefix's complete lines, stripped,
    whose first line ``starts`` matches (a definition)."""
    lines = [x.strip() for x in prefix.split("\n")[:-1] if nontrivial(x)]
    return frozenset(tuple(lines[i:i + min_lines]) for i in range(len(lines) - min_lines + 1)
                     if starts.match(lines[i]))


@dataclass(frozen=True)
class Redefined:
    name: str = "redefined"
    min_lines: int = MIN_LINES
    starts: re.Pattern[str] = DEFINITION
    """What the copy's first line must match (the held-out measurement also tries any line)."""

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        lines = text.split("\n")
        if len(lines) <= self.min_lines:
            return None
        # The suggestion's complete non-trivial lines (the first only when the cursor's line
        # held nothing before the cursor), stripped, with their line numbers.
        first = 0 if ctx.cursor_line_blank else 1
        own = [(i, s) for i, s in enumerate(x.strip() for x in lines[first:-1]) if nontrivial(s)]
        heads = [j for j, (_, s) in enumerate(own[:len(own) - self.min_lines + 1])
                 if self.starts.match(s)]
        if not heads:
            return None  # no definition with enough lines after it: the common case
        runs = definition_runs(ctx.prefix, self.min_lines, self.starts)
        for j in heads:
            if tuple(s for _, s in own[j:j + self.min_lines]) in runs:
                return cut_before(text, line_starts(lines)[first + own[j][0]])
        return None
