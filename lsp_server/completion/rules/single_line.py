"""Deciding whether a suggestion should end at the end of the cursor's line.

The heuristic, in order (first match wins):

1. Text after the cursor on its line → single line (the suggestion must join it).
2. A blank cursor line → multi-line (a new statement or block may follow).
3. The cursor is inside a line comment or a single-line string → single line (it ends with the
   line); inside a block comment or multi-line string → multi-line.
4. The innermost bracket left open by the prefix was opened on an earlier line → multi-line
   (we are inside a call, literal or signature laid out over several lines). Opened on this line
   with code after it (``print("a", x``) → single line: an argument list in progress.
5. The line's code opens a block (``def f():``, ``{``, ``then``, ``x = foo(``) or ends with an
   operator that continues the expression (``return x +``, ``and``) → multi-line.
6. A block header word among the line's leading words (``if``, ``def``, ``function``…) →
   multi-line; a statement already terminated by ``;`` → multi-line (what follows is a new line).
7. A one-line statement (``import``, ``from``, ``return``, ``#include``, ``use``…) → single
   line.
8. An assignment with content after ``=`` (``x = foo``, ``let y = a.b``, ``n := 1``,
   ``a += b``) whose value does not start a block (``function``, ``fn``, ``=>``…) → single
   line.
9. Anything else → multi-line.

It errs towards multi-line when unsure: the multi-line stop rules (indentation scope, blank
lines, repetition) bound a suggestion that did not need several lines, while a wrong
single-line decision cuts one that did.
"""

from __future__ import annotations

import re

from .languages import LangSpec, spec_for
from .lexer import open_brackets, prefix_window, scan, strip_comments

_CONTINUES = re.compile(r"(?:[-+*/%&|^~<>=,?:\\]|\b(?:and|or|not|in|is|instanceof))$")
"""An expression that goes on: a trailing binary operator, comma or word operator. A trailing
``.``, ``->`` or ``::`` is member access, whose name comes on this line, so it is not here;
``->`` and ``::`` would otherwise match ``>`` and ``:`` and are excluded below."""
_MEMBER_ACCESS = re.compile(r"(?:->|::)$")
_LEADING_WORDS = re.compile(r"\s*((?:[#@]?[A-Za-z_]\w*\s+)*[#@]?[A-Za-z_]\w*)")
_COMPOUND = "+-*/%&|^:?<>"


def _leading_words(code: str) -> list[str]:
    m = _LEADING_WORDS.match(code)
    return m.group(1).split() if m else []


def _assignment_value(code: str) -> str | None:
    """The right-hand side if ``code`` is an assignment (``=``, ``:=``, ``+=``…), else None."""
    i = code.find("=")
    if i <= 0 or code[i + 1:i + 2] in ("=", ">", "~"):
        return None
    prev = code[i - 1]
    if prev in "=!" or (prev in "<>" and code[i - 2:i - 1] != prev):
        return None  # ==, !=, <=, >= (but <<= and >>= are assignments)
    target = code[:i].rstrip(_COMPOUND).strip()
    if not target or any(c in target for c in "()\"'") or not re.search(r"\w", target):
        return None
    return code[i + 1:]


def _code_decision(code: str, spec: LangSpec) -> bool:
    """Rules 5–9 for the code of the cursor's line (comments removed, stripped)."""
    if spec.block_open.search(code) or (_CONTINUES.search(code)
                                        and not _MEMBER_ACCESS.search(code)):
        return False
    words = _leading_words(code)
    if any(w in spec.header_words for w in words) or code.endswith(";"):
        return False
    if words and words[0] in spec.one_line_words:
        return True
    value = _assignment_value(code)
    if value is None or not value.strip():
        return False
    return not ("=>" in value or any(w in spec.inline_block_words
                                     for w in re.findall(r"\w+", value)))


def decide_single_line(prefix: str, suffix: str, language: str = "") -> bool:
    """True when the suggestion should end at the end of the line (see the module docstring
    for the heuristic)."""
    end = suffix.find("\n")
    if (suffix if end < 0 else suffix[:end]).strip():
        return True
    prefix = prefix_window(prefix)
    line_start = prefix.rfind("\n") + 1
    line = prefix[line_start:]
    if not line.strip():
        return False
    spec = spec_for(language)
    s = scan(prefix, spec)
    if s.state is not None:
        d = spec.delimiters[s.state]
        return not d.multiline
    stack = open_brackets(s.brackets)
    if stack:
        pos, _ = stack[-1]
        if pos < line_start:
            return False
        if prefix[pos + 1:].strip():
            return True
    code = strip_comments(line, spec).strip()
    return bool(code) and _code_decision(code, spec)
