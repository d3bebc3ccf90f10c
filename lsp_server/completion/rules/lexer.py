"""A small lexer: where the brackets are, outside strings and comments.

One compiled regular expression per language (built from :class:`~.languages.LangSpec`
delimiters) finds comments, strings and brackets in a single pass, so scanning a few KB of prefix
costs well under a millisecond. Text can be scanned from a state (the cursor sits inside a string
or comment), which is how a suggestion is read as the continuation of its prefix.

Limits, by design of a lexer this small: no regex literals (JS ``/[(]/``), no string
interpolation (``${…}``, f-string braces are inside the string and ignored, which is right while
they are balanced), no nested block comments (Rust, Haskell), no Lua long brackets with ``=``
levels, no raw-string hash fences (Rust ``r#"…"#``), no heredocs. Ordinary single-line strings
that are not closed end at the newline (error recovery), except the multi-line kinds (Python
triple quotes, JS/Go backticks, Lua ``[[…]]``, block comments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .languages import BRACKETS, OPENER_OF, Delimited, LangSpec

Span = tuple[int, int, int]
"""(start, end, delimiter index) of a string or comment; start is -1 when it began before the
scanned text (the scan resumed inside it)."""


@dataclass(frozen=True)
class Scan:
    """The result of scanning one text."""

    brackets: tuple[tuple[int, str], ...]
    """(position, character) of every bracket outside strings and comments."""
    spans: tuple[Span, ...]
    """Strings and comments, in order."""
    state: int | None
    """Index in ``spec.delimiters`` of the string or comment still open at the end, else None."""


def _single_char_body(c: str, escapes: bool, multiline: bool) -> str:
    ec = re.escape(c)
    nl = "" if multiline else r"\n"
    if escapes:
        escaped = r"[\s\S]" if multiline else "."
        return rf"(?:\\{escaped}|[^\\{ec}{nl}])*"
    return rf"[^{ec}{nl}]*"


def _forms(d: Delimited) -> tuple[str | None, str]:
    """(closed rest, unclosed rest) after the opener: patterns for the body (+ closer)."""
    if not d.close:  # line comment
        return None, r"[^\n]*"
    if d.body is not None:
        return rf"{d.body}{re.escape(d.close)}", ""
    close = re.escape(d.close)
    if len(d.close) == 1:
        body = _single_char_body(d.close, d.escapes, d.multiline)
        return body + close, body
    if d.escapes:
        unit = r"(?:\\[\s\S]|[^\\])" if d.multiline else r"(?:\\.|[^\\\n])"
    else:
        unit = r"[\s\S]" if d.multiline else r"[^\n]"
    return rf"{unit}*?{close}", rf"{unit}*"


class Lexer:
    """Compiled patterns for one language."""

    def __init__(self, spec: LangSpec) -> None:
        self.spec = spec
        alts: list[str] = []
        self._closed_rest: list[re.Pattern[str] | None] = []
        self._open_rest: list[re.Pattern[str] | None] = []
        for i, d in enumerate(spec.delimiters):
            closed, unclosed = _forms(d)
            opener = re.escape(d.open)
            if closed is not None:
                alts.append(f"(?P<c{i}>{opener}{closed})")
            if unclosed:
                alts.append(f"(?P<o{i}>{opener}{unclosed})")
            self._closed_rest.append(re.compile(closed) if closed is not None else None)
            self._open_rest.append(re.compile(unclosed) if unclosed else None)
        brackets = re.escape("".join(BRACKETS) + "".join(BRACKETS.values()))
        alts.append(f"(?P<b>[{brackets}])")
        # The lookahead on the possible first characters lets the engine skip plain code
        # without trying every alternative at every position (3-4x faster).
        firsts = "".join(sorted({re.escape(d.open[0]) for d in spec.delimiters})) + brackets
        self._master = re.compile(f"(?=[{firsts}])(?:{'|'.join(alts)})")

    def scan(self, text: str, state: int | None = None) -> Scan:
        """Scan ``text``, starting inside delimiter ``state`` when it is not None."""
        brackets: list[tuple[int, str]] = []
        spans: list[Span] = []
        pos = 0
        n = len(text)
        if state is not None:
            pos, state = self._resume(text, state, spans)
            if state is not None:
                return Scan((), tuple(spans), state)
        for m in self._master.finditer(text, pos):
            kind = m.lastgroup
            if kind == "b":
                brackets.append((m.start(), m.group()))
                continue
            assert kind is not None
            i = int(kind[1:])
            spans.append((m.start(), m.end(), i))
            if kind[0] == "o" and m.end() == n:
                state = i
        return Scan(tuple(brackets), tuple(spans), state)

    def _resume(self, text: str, state: int, spans: list[Span]) -> tuple[int, int | None]:
        closed = self._closed_rest[state]
        if closed is not None and (m := closed.match(text)):
            spans.append((-1, m.end(), state))
            return m.end(), None
        unclosed = self._open_rest[state]
        end = unclosed.match(text).end() if unclosed is not None else 0  # type: ignore[union-attr]
        spans.append((-1, end, state))
        return end, (state if end == len(text) else None)


@lru_cache(maxsize=64)
def lexer_for(spec: LangSpec) -> Lexer:
    return Lexer(spec)


@lru_cache(maxsize=16)
def scan(text: str, spec: LangSpec, state: int | None = None) -> Scan:
    """Memoised :meth:`Lexer.scan`: the same prefix is scanned by several rules per request."""
    return lexer_for(spec).scan(text, state)


SCAN_WINDOW = 8192
"""Characters of prefix or suffix scanned at most: the brackets that matter are near the
cursor, and a whole large document would cost milliseconds per request."""


def prefix_window(prefix: str) -> str:
    """The end of ``prefix`` that is scanned, starting at a line start when cut."""
    if len(prefix) <= SCAN_WINDOW:
        return prefix
    start = prefix.find("\n", len(prefix) - SCAN_WINDOW)
    return prefix[start + 1:] if start >= 0 else prefix[-SCAN_WINDOW:]


def open_brackets(brackets: tuple[tuple[int, str], ...]) -> list[tuple[int, str]]:
    """Openers left unclosed, outermost first. A closer that does not match the innermost
    opener closes nothing (it is typing in progress or a lexer miss) and is skipped."""
    stack: list[tuple[int, str]] = []
    for pos, ch in brackets:
        if ch in BRACKETS:
            stack.append((pos, ch))
        elif stack and stack[-1][1] == OPENER_OF[ch]:
            stack.pop()
    return stack


def unmatched_closers(brackets: tuple[tuple[int, str], ...]) -> list[tuple[int, str]]:
    """Closers with no opener before them in the same text, in order."""
    depth: list[str] = []
    out: list[tuple[int, str]] = []
    for pos, ch in brackets:
        if ch in BRACKETS:
            depth.append(ch)
        elif depth:
            if depth[-1] == OPENER_OF[ch]:
                depth.pop()
        else:
            out.append((pos, ch))
    return out


def strip_comments(line: str, spec: LangSpec) -> str:
    """``line`` without its comments (strings kept), for judging what the code ends with."""
    s = scan(line, spec)
    cut = [(a, b) for a, b, i in s.spans if spec.delimiters[i].kind == "comment"]
    if not cut:
        return line
    out, last = [], 0
    for a, b in cut:
        out.append(line[last:max(a, 0)])
        last = b
    out.append(line[last:])
    return "".join(out)
