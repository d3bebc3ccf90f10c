"""Prompt assembly as tokens under a token budget.

The budget is split three ways: repository context (at most ``context_share`` of it, filled by
the context provider), then the suffix (``suffix_share`` of what remains), then the prefix
(everything else). Budget a section does not use flows to the others. Truncation keeps the text
nearest the cursor: the prefix loses its beginning, the suffix its end, at line boundaries when a
whole line fits, so the model sees complete lines.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ..errors import TemplateError
from ..languages import line_comment
from .templates import PREFIX, SUFFIX, FimTemplate, Order
from .text_prompt import CHARS_PER_TOKEN
from .tokens import Tokenizer


@dataclass(frozen=True)
class ContextFile:
    """A file of repository context, already selected and ordered by the context code."""

    path: str
    """Workspace-relative path shown to the model."""
    text: str
    """The content to include (a whole file or an outline)."""


@dataclass(frozen=True)
class Budget:
    """Token budget of one prompt."""

    total: int
    """Tokens the whole prompt may use (context window minus the generation allowance)."""
    context_share: float = 0.35
    """Upper share of the budget for repository context."""
    suffix_share: float = 0.25
    """Share of the non-context budget reserved for the suffix."""
    sticky_share: float = 0.0
    """When the prefix is cut, move the cut in steps of this share of the prefix budget (in
    characters, at ``CHARS_PER_TOKEN`` or the tokenizer's ``chars_per_token``) instead of line
    by line, so typing at the cursor keeps the prompt's start and the engine's KV cache (0: line
    by line; see ``fit_tail``)."""

    @classmethod
    def for_window(cls, window: int, max_tokens: int, *, context_share: float = 0.35,
                   suffix_share: float = 0.25, sticky_share: float = 0.0,
                   scale: float = 1.0) -> "Budget":
        """The budget of a prompt in a context window of ``window`` tokens that must leave
        ``max_tokens`` for generation (and one for the first generated token's position).
        ``scale`` converts tokens to the assembler's units (characters for remote text
        prompts)."""
        return cls(total=int((window - max_tokens - 1) * scale), context_share=context_share,
                   suffix_share=suffix_share, sticky_share=sticky_share)

    def context_allowance(self, n_fixed: int) -> int:
        """What repository context may use once ``n_fixed`` tokens (BOS, sentinels) are spent:
        the split ``assemble`` applies, so a provider that fills exactly this always fits."""
        return max(0, int((self.total - n_fixed) * self.context_share))


@dataclass
class Prompt:
    """An assembled prompt and how its budget was spent."""

    tokens: list[int]
    template: str
    order: Order | None
    n_context: int = 0
    n_prefix: int = 0
    n_suffix: int = 0
    n_special: int = 0
    context_files: list[str] = field(default_factory=list)
    """Paths of the context files that fit, in prompt order."""
    prefix_truncated: bool = False
    suffix_truncated: bool = False
    ends_with_prefix: bool = False
    """The last token is the prefix's (a prefix-last layout): the cursor is at the prompt's
    end, so the engine may heal the token it ends in (:mod:`..engine.healing`)."""


# A token never spans more characters than this in the vocabularies we serve (long runs of
# spaces are the worst case); used to cut huge texts before tokenizing them.
_MAX_CHARS_PER_TOKEN = 32
_SUFFIX_STEPS = 8
"""Unused prefix budget goes to the suffix in steps of 1/8 of the budget (see ``assemble``)."""


def resolve_sentinels(template: FimTemplate, token_id: Callable[[str], int | None]
                      ) -> dict[str, int]:
    """Role → token id for every sentinel of ``template`` present in the vocabulary."""
    found: dict[str, int] = {}
    for role, spellings in template.sentinels.items():
        for text in spellings:
            tid = token_id(text)
            if tid is not None:
                found[role] = tid
                break
    return found


def sentinel_tokens(template: FimTemplate, tok: Tokenizer) -> dict[str, list[int]]:
    """Role → the tokens that spell each sentinel: one special token, or for a template with
    text sentinels the tokenized text of its first spelling."""
    if template.text_sentinels:
        return {role: tok.tokenize(spellings[0])
                for role, spellings in template.sentinels.items()}
    return {role: [tid] for role, tid in resolve_sentinels(template, tok.token_id).items()}


_NEWLINE = re.compile("\n")
_FAST_CHARS_PER_TOKEN = 4
"""A text of at most ``budget`` × this many characters is tokenized whole first: it usually fits."""


def _first_true(n: int, guess: int, ok: Callable[[int], bool]) -> int:
    """The smallest k in [0, n) with ``ok(k)`` (n if none), for ``ok`` False…False True…True.

    Gallops from ``guess`` and then bisects, so a good guess costs a few calls of ``ok`` (each a
    tokenization of a few thousand tokens here) where a plain bisection costs log2(n)."""
    guess = min(max(guess, 0), n - 1)
    if ok(guess):  # invariant below: lo is -1 or not ok, hi is n or ok
        hi, step = guess, 1
        lo = hi - step
        while lo >= 0 and ok(lo):
            hi, step = lo, step * 2
            lo = hi - step
        lo = max(lo, -1)
    else:
        lo, step = guess, 1
        hi = lo + step
        while hi < n and not ok(hi):
            lo, step = hi, step * 2
            hi = lo + step
        hi = min(hi, n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _memo(fn: Callable[[int], list[int]]) -> Callable[[int], list[int]]:
    seen: dict[int, list[int]] = {}
    return lambda k: seen[k] if k in seen else seen.setdefault(k, fn(k))


_LINE_COUNTS: "weakref.WeakKeyDictionary[object, dict[str, int]]" = weakref.WeakKeyDictionary()
_LINE_COUNTS_MAX = 50_000


def _line_counter(tok: Tokenizer) -> Callable[[str], int]:
    """Token count of one line, remembered per tokenizer: between keystrokes only the cursor
    line changes, so counting the lines near the cursor costs one tokenization per request."""
    try:
        seen = _LINE_COUNTS.setdefault(tok, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no memory
        seen = {}

    def count(line: str) -> int:
        n = seen.get(line)
        if n is None:
            if len(seen) >= _LINE_COUNTS_MAX:
                seen.clear()
            n = seen[line] = len(tok.tokenize(line))
        return n
    return count


def _guess(lines: Iterable[str], budget: int, count: Callable[[str], int],
           measure: Callable[[int], int]) -> int:
    """How many of ``lines`` (nearest first, read lazily) fit in ``budget`` tokens, estimated.

    Lines are counted one by one (remembered) until 10 % over the budget; those counts
    overestimate the text tokenized whole (each line gets its own start, merges across line ends
    are missed), so they are scaled by the true count of that stretch, ``measure(n)`` for the n
    nearest lines, one tokenization that the exact search reuses."""
    n, total, sums = 0, 0, []
    for line in lines:
        if total > budget * 1.1:
            break
        total += count(line)
        n += 1
        sums.append(total)
    if n == 0:
        return 0
    ratio = measure(n) / max(1, total)
    return sum(1 for t in sums if t * ratio <= budget)


def _whole(tok: Tokenizer, text: str, budget: int) -> list[int] | None:
    """The tokens of all of ``text`` when it is short enough to fit ``budget`` at once."""
    if len(text) <= budget * _FAST_CHARS_PER_TOKEN:
        toks = tok.tokenize(text)
        if len(toks) <= budget:
            return toks
    return None


def fit_tail(tok: Tokenizer, text: str, budget: int, stride: int = 0) -> tuple[list[int], bool]:
    """Tokens of the longest tail of ``text`` within ``budget``; cut at a line start if possible.

    ``stride`` (characters, 0 = off) makes the cut sticky: it is moved on to the first line start
    at or after the next multiple of ``stride``, so while the user types at the end of ``text``
    the cut, hence the start of the prompt, stays put for about ``stride`` characters instead of
    moving a line at a time. A prompt cache (llama.cpp's, local or on a server) is only reused up
    to the first changed token, so every move of the cut re-evaluates the whole prompt.

    Cost: a few tokenizations of about ``budget`` tokens (an estimate from remembered line
    counts, then a galloping search around it). A bisection over the whole text cost ~12
    tokenizations of up to 32 characters per budget token (bench/prompt_stability.py).

    Returns (tokens, truncated).
    """
    if budget <= 0 or not text:
        return [], bool(text)
    whole = _whole(tok, text, budget)
    if whole is not None:
        return whole, False
    cut = max(0, len(text) - budget * _MAX_CHARS_PER_TOKEN)
    # Line starts at or after the cut (the text's start counts when nothing is cut).
    starts = ([0] if cut == 0 else []) + \
        [m.end() for m in _NEWLINE.finditer(text, max(0, cut - 1)) if m.end() < len(text)]
    if not starts:  # one huge line: keep its last tokens
        return tok.tokenize(text[cut:])[-budget:], True
    n = len(starts)
    tail = _memo(lambda k: tok.tokenize(text[starts[k]:]))
    bounds = starts + [len(text)]
    nearest = (text[bounds[k]:bounds[k + 1]] for k in range(n - 1, -1, -1))  # cursor line first
    fitting = _guess(nearest, budget, _line_counter(tok), lambda m: len(tail(n - m)))
    k = _first_true(n, n - fitting, lambda k: len(tail(k)) <= budget)
    if k == n:  # the cursor line alone is over budget: keep its last tokens
        return tail(n - 1)[-budget:], True
    at = starts[k]
    if stride > 0:
        anchor = -(-at // stride) * stride  # the next multiple of stride
        sticky = next((s for s in starts[k:] if s >= anchor), at)
        if sticky != at:
            return tok.tokenize(text[sticky:]), True
    return tail(k), at > 0


def fit_head(tok: Tokenizer, text: str, budget: int) -> tuple[list[int], bool]:
    """Tokens of the longest head of ``text`` within ``budget``; cut at a line end if possible
    (the same search as ``fit_tail``, from the other end)."""
    if budget <= 0 or not text:
        return [], bool(text)
    whole = _whole(tok, text, budget)
    if whole is not None:
        return whole, False
    end = min(len(text), budget * _MAX_CHARS_PER_TOKEN)
    ends = [m.end() for m in _NEWLINE.finditer(text, 0, end)]  # after each newline
    if end == len(text) and (not ends or ends[-1] != end):
        ends.append(end)  # the whole text is a candidate too
    if not ends:
        return tok.tokenize(text[:end])[:budget], True
    n = len(ends)
    head = _memo(lambda j: tok.tokenize(text[:ends[n - 1 - j]]))  # j = 0: the longest head
    bounds = [0] + ends
    nearest = (text[bounds[k]:bounds[k + 1]] for k in range(n))  # the first line first
    fitting = _guess(nearest, budget, _line_counter(tok), lambda m: len(head(n - m)))
    j = _first_true(n, n - fitting, lambda j: len(head(j)) <= budget)
    if j == n:  # the first line alone is over budget: keep its first tokens
        return head(n - 1)[:budget], True
    return head(j), ends[n - 1 - j] < len(text)


def _context_tokens(template: FimTemplate, tok: Tokenizer, ids: dict[str, list[int]],
                    files: Sequence[ContextFile], path: str, repo_name: str, budget: int
                    ) -> tuple[list[int], list[int], list[str], int]:
    """Tokens of the context section and of the text that goes in front of the prefix.

    Families with a file-separator token get ``[repo] (SEP path\\n text)* SEP current-path\\n``
    before the first sentinel (as Qwen2.5-Coder, StarCoder2 and llama.cpp's /infill lay it
    out); the others get a comment-headed block at the start of the prefix slot.
    Returns (section tokens, prefix-slot tokens, included paths, special-token count).
    """
    section: list[int] = []
    lead: list[int] = []
    used: list[str] = []
    n_special = 0
    sep = ids.get("sep")
    if sep is not None:
        # The current file's header comes last but is reserved first: it names the language.
        tail = sep + tok.tokenize(f"{path}\n") if path else []
        budget -= len(tail)
        if files and "repo" in ids:
            head = ids["repo"] + tok.tokenize((repo_name or "workspace") + "\n")
            if len(head) <= budget:
                section += head
                n_special += len(ids["repo"])
        for f in files:
            chunk = sep + tok.tokenize(f"{f.path}\n{f.text}")
            if len(section) + len(chunk) <= budget:
                section += chunk
                used.append(f.path)
                n_special += len(sep)
        section += tail
        n_special += len(sep) if tail else 0
        return section, lead, used, n_special
    marker = line_comment(path)
    for f in files:
        text = f.text if f.text.endswith("\n") else f.text + "\n"
        chunk = tok.tokenize(f"{marker} file: {f.path}\n{text}")
        if len(lead) + len(chunk) <= budget:
            lead += chunk
            used.append(f.path)
    return section, lead, used, n_special


def _missing_sentinel(template: FimTemplate, layout: Sequence[str], ids: dict[str, list[int]]
                      ) -> None:
    missing = [p for p in layout if p not in (PREFIX, SUFFIX) and p not in ids]
    if missing:
        spell = template.sentinels[missing[0]][0]
        raise TemplateError(f"template '{template.name}' needs the token {spell!r}, which this "
                            "model's vocabulary lacks",
                            "choose the template matching the model (`codefill models --model "
                            "PATH` shows the detected one) or 'plain'")


def _head(template: FimTemplate, tok: Tokenizer) -> list[int]:
    return [tok.bos_id] if template.bos and tok.add_bos and tok.bos_id is not None else []


def fixed_tokens(template: FimTemplate, tok: Tokenizer, order: Order | None = None) -> int:
    """Tokens every prompt of ``template`` spends before any text: BOS and the FIM sentinels
    (what :meth:`Budget.context_allowance` subtracts)."""
    layout = template.layout(order)
    ids = sentinel_tokens(template, tok)
    _missing_sentinel(template, layout, ids)
    return len(_head(template, tok)) + sum(len(ids[p]) for p in layout
                                           if p not in (PREFIX, SUFFIX))


def assemble(template: FimTemplate, tok: Tokenizer, *, prefix: str, suffix: str,
             budget: Budget, path: str = "", context: Sequence[ContextFile] = (),
             order: Order | None = None, repo_name: str = "") -> Prompt:
    """Build the prompt tokens for a cursor between ``prefix`` and ``suffix``.

    ``path`` is the current file's workspace-relative path (shown to families that take file
    names); ``context`` the repository-context files in the order they should appear.
    """
    layout = template.layout(order)
    ids = sentinel_tokens(template, tok)
    _missing_sentinel(template, layout, ids)
    uses_suffix = SUFFIX in layout
    head = _head(template, tok)
    n_special = len(head) + sum(len(ids[p]) for p in layout if p not in (PREFIX, SUFFIX))
    avail = budget.total - n_special
    if avail < 8:
        raise TemplateError(f"prompt budget of {budget.total} tokens is too small",
                            "raise engine.context_size or lower prompt.max_tokens")

    ctx_budget = budget.context_allowance(n_special) if (context or path) else 0
    section, lead, used, ctx_special = _context_tokens(
        template, tok, ids, context, path, repo_name, ctx_budget)
    rest = avail - len(section) - len(lead)

    # Suffix first within its share, prefix gets the rest; then hand unused prefix budget back.
    suf_budget = int(rest * budget.suffix_share) if uses_suffix else 0
    suf_toks, suf_cut = fit_head(tok, suffix, suf_budget) if uses_suffix else ([], False)
    pre_budget = rest - len(suf_toks)
    # The stride is in characters: a character-level tokenizer (remote text prompts) says so.
    cpt = getattr(tok, "chars_per_token", CHARS_PER_TOKEN)
    stride = int(pre_budget * cpt * budget.sticky_share)
    pre_toks, pre_cut = fit_tail(tok, prefix, pre_budget, stride=stride)
    if uses_suffix and suf_cut and not pre_cut:
        # A short prefix leaves budget to the suffix, in steps: the prefix grows at every
        # keystroke, and a suffix cut that followed it token by token would move a line at a
        # time; in SPM the suffix comes first, so each move re-evaluated the whole prompt.
        # (A cut prefix leaves only what its line or sticky cut left over: nothing is given.)
        step = max(1, rest // _SUFFIX_STEPS)
        spare = (rest - len(pre_toks) - len(suf_toks)) // step * step
        if spare > 0:
            suf_toks, suf_cut = fit_head(tok, suffix, len(suf_toks) + spare)

    slots = {PREFIX: lead + pre_toks, SUFFIX: suf_toks}
    tokens = head + section
    for part in layout:
        tokens += slots[part] if part in slots else ids[part]
    return Prompt(tokens=tokens, template=template.name,
                  order=order if order is not None else (template.orders[0] if template.orders else None),
                  n_context=len(section) + len(lead), n_prefix=len(pre_toks),
                  n_suffix=len(suf_toks), n_special=n_special + ctx_special,
                  context_files=used, prefix_truncated=pre_cut, suffix_truncated=suf_cut,
                  ends_with_prefix=layout[-1] == PREFIX and bool(pre_toks))
