"""Stop rule ``indent_scope``: a multi-line suggestion stays inside the block it began in.

The *anchor* is the suggestion's first line as it will read in the document (the cursor's line
plus the suggestion's first line); when that is blank, the suggestion's first non-blank line.
Its indentation is the *base*. Then, for each later line:

* A line indented deeper than the base is inside the scope.
* A line indented less than the base has left it: cut before it.
* A line at the base indentation is a sibling statement and stays, unless the anchor opens a
  block (the cursor sits at the end of ``def f():``, ``if (x) {``, ``x = foo(``, ``then`` … and
  the cursor's line was not blank): then the scope is the new, deeper block, and a line back at
  the base indentation ends it. That line is kept, and the suggestion stops after it, when it
  closes the block (``}``, ``)``, ``end``); it is kept and the scope goes on when it continues
  the block chain (``} else {``, ``else:``, ``elif …:``, ``case 1:``); otherwise it is cut.
* Blank lines do not end the scope; two consecutive complete blank lines do (the cut drops
  them). In Python a blank line followed by a dedent, the usual end of a block, is the dedent
  case above.

Lines whose indentation carries no scope (C preprocessor lines) are skipped. A line at the base
that is still being generated and could still become a closing or continuing line (``}``,
``el``…) is judged when it is complete. In single-line mode the rule does nothing (``line_end``
owns it). Limit: the content lines of multi-line strings are measured like code, so a
dedented string body (SQL in a triple-quoted string at column 0) ends the scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .base import SuggestionContext, cut_before, indent_width, line_starts
from .languages import LangSpec
from .lexer import open_brackets, scan, strip_comments

_FIRST_WORD = re.compile(r"[A-Za-z_]\w*")


@lru_cache(maxsize=64)
def opens_block(line: str, spec: LangSpec) -> bool:
    """The line's code opens a deeper block: it ends with a block opener (``:``, ``{``,
    ``then``…) or leaves a bracket open."""
    code = strip_comments(line, spec).strip()
    return bool(spec.block_open.search(code)) or bool(open_brackets(scan(line, spec).brackets))


def _may_become_boundary(partial: str, spec: LangSpec) -> bool:
    """A partial line that could still turn into a closing or continuing line."""
    if spec.block_close.match(partial):
        return True
    m = _FIRST_WORD.match(partial)
    return bool(m) and m.end() == len(partial) and any(
        w.startswith(partial) for w in spec.block_words)


@dataclass(frozen=True)
class IndentScope:
    name: str = "indent_scope"

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        if ctx.single_line or "\n" not in text:
            return None
        spec = ctx.spec
        lines = text.split("\n")
        starts = line_starts(lines)
        last = len(lines) - 1  # lines[last] is still being generated
        first = ctx.cursor_line + lines[0]
        anchor: int | None = 0
        if first.strip():
            base = indent_width(first)
            block = not ctx.cursor_line_blank and opens_block(first, spec)
        else:
            anchor = next((i for i in range(1, len(lines)) if lines[i].strip()), None)
            base = indent_width(lines[anchor]) if anchor is not None else 0
            block = False
        blank_run = 0
        exempt = spec.indent_exempt
        for i in range(1, len(lines)):
            line = lines[i]
            stripped = line.strip()
            if not stripped:
                if i < last:
                    blank_run += 1
                    if blank_run == 2:
                        return cut_before(text, starts[i])
                continue
            blank_run = 0
            if anchor is None or i <= anchor or (exempt and exempt.match(line)):
                continue
            width = indent_width(line)
            if width > base or (width == base and not block):
                continue
            if width < base:
                return cut_before(text, starts[i])
            # Back at the opener's indentation: the block ends or continues here.
            if i == last:
                if spec.block_continue.match(stripped) or _may_become_boundary(stripped, spec):
                    return None
                return cut_before(text, starts[i])
            if spec.block_continue.match(stripped):
                continue
            if spec.block_close.match(stripped):
                return starts[i] + len(line)
            return cut_before(text, starts[i])
        return None
