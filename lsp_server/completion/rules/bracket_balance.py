"""Post-processor ``bracket_balance``: never close what the suggestion did not open, unless the
document needs it.

The suggestion is read as the continuation of the prefix (brackets inside strings and comments
do not count, and a cursor inside a string is honoured; see :mod:`.lexer` for the limits).
Each closing bracket either closes an opener of the suggestion's own, or is *unmatched*. The
prefix's open brackets that the suffix does not close are the *needed* closers
(:attr:`~.base.SuggestionContext.needed_closers`): the j-th unmatched closer of the suggestion is
legitimate when the j-th innermost needed opener has its type. The suggestion is cut before the
first closer that is not legitimate:

* prefix ``foo(``, suffix ``)``, suggestion ``a, b)`` → ``a, b`` (the suffix closes it);
* prefix ``foo(``, suffix empty, suggestion ``a, b)`` → unchanged (it is needed);
* prefix ``print(foo(``, suffix ``)``, suggestion ``x))`` → ``x)`` (one is needed, one is not);
* a closer of the wrong type for the opener it would close (``foo(a]``) → cut before it.

Only ``()``, ``[]`` and ``{}`` are handled; keyword blocks (``end``) are ``indent_scope``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import SuggestionContext
from .languages import BRACKETS, OPENER_OF
from .lexer import Scan, lexer_for


def suggestion_scan(text: str, ctx: SuggestionContext) -> Scan:
    """The suggestion scanned from the lexer state at the cursor."""
    return lexer_for(ctx.spec).scan(text, ctx.prefix_scan.state)


def first_illegitimate_closer(text: str, ctx: SuggestionContext) -> int | None:
    """Position of the first closer the suggestion must not write, or None."""
    need = ctx.needed_closers
    own: list[str] = []
    used = 0
    for pos, ch in suggestion_scan(text, ctx).brackets:
        if ch in BRACKETS:
            own.append(ch)
        elif own:
            if own[-1] != OPENER_OF[ch]:
                return pos
            own.pop()
        elif used < len(need) and need[-1 - used] == OPENER_OF[ch]:
            used += 1
        else:
            return pos
    return None


def cut_is_safe(text: str, cut: int, ctx: SuggestionContext) -> bool:
    """Removing ``text[cut:]`` takes nothing the kept part relies on: no closer of an opener in
    the kept part, no needed closer of the prefix, no end of a string or comment the kept part
    began."""
    s = suggestion_scan(text, ctx)
    if any(0 <= a < cut < b for a, b, _ in s.spans):
        return False
    need = ctx.needed_closers
    own: list[int] = []
    used = 0
    for pos, ch in s.brackets:
        if ch in BRACKETS:
            own.append(pos)
        elif own:
            if own.pop() < cut <= pos:
                return False
        elif used < len(need) and need[-1 - used] == OPENER_OF[ch]:
            used += 1
            if pos >= cut:
                return False
    return True


@dataclass(frozen=True)
class BracketBalance:
    name: str = "bracket_balance"

    def apply(self, text: str, ctx: SuggestionContext) -> str:
        pos = first_illegitimate_closer(text, ctx)
        return text if pos is None else text[:pos].rstrip(" \t")
