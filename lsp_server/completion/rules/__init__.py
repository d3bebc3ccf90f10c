"""Stop rules and post-processing for suggestions (plain Python, no LSP types).

While a suggestion is generated, :func:`first_cut` runs the stop rules after every token; once
it is finished, :func:`postprocess` cleans it. Each rule is a small named unit in its own module;
the names are stable (ablation benchmarks switch rules off by name, logs and
``codefill/status`` report which rule cut or emptied a suggestion).

Stop rules, in the order they are checked (the earliest cut wins; on a tie, the first rule):

* ``line_end`` — single-line mode: end at the first line break (:mod:`.line_end`).
* ``indent_scope`` — multi-line mode: stay inside the block the suggestion began in
  (:mod:`.indent_scope`).
* ``suffix_echo`` — multi-line mode: stop when the suggestion reaches the suffix's next line
  (:mod:`.suffix_echo`).
* ``repetition`` — stop when the suggestion repeats itself or the lines above the cursor
  (:mod:`.repetition`).
* ``progression`` — stop when the suggestion counts on (``if n == 1``, ``if n == 2``, …) in
  lines or in one line (:mod:`.progression`).
* ``renumbered`` — stop when the suggestion writes a long block again with only its numbers
  changed (``def f(n):`` and its body, then ``def f2(n):`` and the same body; :mod:`.renumbered`).
* ``redefined`` — stop when the suggestion writes again a definition that stands above the
  cursor (the function's ``def`` line, its docstring, …; :mod:`.redefined`).
* ``inline_loop`` — stop when the line being written repeats one chunk with only its literals
  changing, not counting (``c == "a" or c == "e" or c == "t" or …``; :mod:`.inline_loop`).

The time budget is not a rule here: the engine enforces it between tokens
(``GenerationRequest.time_budget_s`` in :mod:`lsp_server.engine.types`), as do the token limit
and cancellation.

Post-processors, in the order they are applied:

* ``suffix_overlap`` — trim a tail the suffix already holds (:mod:`.suffix_overlap`).
* ``bracket_balance`` — cut before a closer the suggestion did not open and the document does
  not need (:mod:`.bracket_balance`).
* ``trailing_whitespace`` — strip trailing blanks and final newlines (:mod:`.whitespace`).
* ``empty`` — drop an empty or whitespace-only suggestion (:mod:`.whitespace`).

``disabled`` sets may name rules of either registry, so one ablation set can be passed to both
functions; a name in neither raises :class:`ValueError`.
"""

from __future__ import annotations

from .base import PostProcessor, StopRule, SuggestionContext
from .bracket_balance import BracketBalance
from .indent_scope import IndentScope
from .inline_loop import InlineLoop
from .line_end import LineEnd
from .progression import Progression
from .redefined import Redefined
from .renumbered import Renumbered
from .repetition import Repetition
from .single_line import decide_single_line
from .suffix_echo import SuffixEcho
from .suffix_overlap import SuffixOverlap
from .whitespace import Empty, TrailingWhitespace

__all__ = [
    "POST_PROCESSORS", "RULE_NAMES", "STOP_RULES", "PostProcessor", "StopRule",
    "SuggestionContext", "decide_single_line", "first_cut", "postprocess",
]


def _registry(*rules: StopRule | PostProcessor) -> dict:
    return {rule.name: rule for rule in rules}


STOP_RULES: dict[str, StopRule] = _registry(LineEnd(), IndentScope(), SuffixEcho(), Repetition(),
                                            Progression(), Renumbered(), Redefined(),
                                            InlineLoop())
"""Stop rules by name, in the order they are checked."""
POST_PROCESSORS: dict[str, PostProcessor] = _registry(
    SuffixOverlap(), BracketBalance(), TrailingWhitespace(), Empty())
"""Post-processors by name, in the order they are applied."""
RULE_NAMES: frozenset[str] = frozenset(STOP_RULES) | frozenset(POST_PROCESSORS)
"""Every name ``disabled`` may hold."""


def _check(disabled: frozenset[str]) -> None:
    unknown = disabled - RULE_NAMES
    if unknown:
        raise ValueError(
            f"unknown rule name(s) {', '.join(sorted(unknown))}; known stop rules: "
            f"{', '.join(STOP_RULES)}; known post-processors: {', '.join(POST_PROCESSORS)}")


def first_cut(text: str, ctx: SuggestionContext,
              disabled: frozenset[str] = frozenset()) -> tuple[int, str] | None:
    """The earliest cut any enabled stop rule asks for: (index, rule name), or None."""
    if disabled:
        _check(disabled)
    best: tuple[int, str] | None = None
    for name, rule in STOP_RULES.items():
        if name in disabled:
            continue
        at = rule.cut(text, ctx)
        if at is not None and (best is None or at < best[0]):
            best = (at, name)
    return best


def postprocess(text: str, ctx: SuggestionContext,
                disabled: frozenset[str] = frozenset()) -> tuple[str, list[str]]:
    """Apply every enabled post-processor in order; return the final text and the names of the
    processors that changed it."""
    if disabled:
        _check(disabled)
    changed: list[str] = []
    for name, proc in POST_PROCESSORS.items():
        if name in disabled:
            continue
        out = proc.apply(text, ctx)
        if out != text:
            changed.append(name)
            text = out
    return text, changed
