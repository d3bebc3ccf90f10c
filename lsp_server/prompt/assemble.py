"""Prompt assembly as tokens under a token budget.

The budget is split three ways: repository context (at most ``context_share`` of it; the context
issue fills this section), then the suffix (``suffix_share`` of what remains), then the prefix
(everything else). Budget a section does not use flows to the others. Truncation keeps the text
nearest the cursor: the prefix loses its beginning, the suffix its end, at line boundaries when a
whole line fits, so the model sees complete lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import TemplateError
from .languages import line_comment
from .templates import PREFIX, SUFFIX, FimTemplate, Order
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


# A token never spans more characters than this in the vocabularies we serve (long runs of
# spaces are the worst case); used to cut huge texts before tokenizing them.
_MAX_CHARS_PER_TOKEN = 32


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


def _line_starts(text: str) -> list[int]:
    return [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text)]


def fit_tail(tok: Tokenizer, text: str, budget: int, stride: int = 0) -> tuple[list[int], bool]:
    """Tokens of the longest tail of ``text`` within ``budget``; cut at a line start if possible.

    ``stride`` (characters, 0 = off) makes the cut sticky: it is moved on to the first line start
    at or after the next multiple of ``stride``, so while the user types at the end of ``text``
    the cut, hence the start of the prompt, stays put for about ``stride`` characters instead of
    moving a line at a time. A prompt cache (llama.cpp's, local or on a server) is only reused up
    to the first changed token, so every move of the cut re-evaluates the whole prompt.

    Returns (tokens, truncated).
    """
    if budget <= 0 or not text:
        return [], bool(text)
    cut = max(0, len(text) - budget * _MAX_CHARS_PER_TOKEN)
    toks = tok.tokenize(text[cut:])
    if len(toks) <= budget and cut == 0:
        return toks, False
    starts = [s for s in _line_starts(text) if s >= cut]
    # Smallest line start whose tail fits: token count shrinks as the start moves right.
    lo, hi, best, at = 0, len(starts) - 1, None, -1
    while lo <= hi:
        mid = (lo + hi) // 2
        t = tok.tokenize(text[starts[mid]:])
        if len(t) <= budget:
            best, at, hi = t, mid, mid - 1
        else:
            lo = mid + 1
    if best is not None and best:
        if stride > 0:
            anchor = -(-starts[at] // stride) * stride  # the next multiple of stride
            sticky = next((s for s in starts[at:] if s >= anchor), starts[at])
            if sticky != starts[at]:
                return tok.tokenize(text[sticky:]), True
        return best, True
    # The cursor line alone is over budget: keep its last tokens.
    return toks[-budget:], True


def fit_head(tok: Tokenizer, text: str, budget: int) -> tuple[list[int], bool]:
    """Tokens of the longest head of ``text`` within ``budget``; cut at a line end if possible."""
    if budget <= 0 or not text:
        return [], bool(text)
    end = min(len(text), budget * _MAX_CHARS_PER_TOKEN)
    toks = tok.tokenize(text[:end])
    if len(toks) <= budget and end == len(text):
        return toks, False
    ends = [i + 1 for i, ch in enumerate(text[:end]) if ch == "\n"]
    lo, hi, best = 0, len(ends) - 1, None
    while lo <= hi:  # largest line end whose head fits
        mid = (lo + hi) // 2
        t = tok.tokenize(text[:ends[mid]])
        if len(t) <= budget:
            best, lo = t, mid + 1
        else:
            hi = mid - 1
    if best:
        return best, True
    return toks[:budget], True


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


def assemble(template: FimTemplate, tok: Tokenizer, *, prefix: str, suffix: str,
             budget: Budget, path: str = "", context: Sequence[ContextFile] = (),
             order: Order | None = None, repo_name: str = "") -> Prompt:
    """Build the prompt tokens for a cursor between ``prefix`` and ``suffix``.

    ``path`` is the current file's workspace-relative path (shown to families that take file
    names); ``context`` the repository-context files in the order they should appear.
    """
    layout = template.layout(order)
    ids = sentinel_tokens(template, tok)
    missing = [p for p in layout if p not in (PREFIX, SUFFIX) and p not in ids]
    if missing:
        spell = template.sentinels[missing[0]][0]
        raise TemplateError(f"template '{template.name}' needs the token {spell!r}, which this "
                            "model's vocabulary lacks",
                            "choose the template matching the model (`codefill models --model "
                            "PATH` shows the detected one) or 'plain'")
    uses_suffix = SUFFIX in layout
    head: list[int] = [tok.bos_id] if template.bos and tok.add_bos and tok.bos_id is not None else []
    n_special = len(head) + sum(len(ids[p]) for p in layout if p not in (PREFIX, SUFFIX))
    avail = budget.total - n_special
    if avail < 8:
        raise TemplateError(f"prompt budget of {budget.total} tokens is too small",
                            "raise engine.context_size or lower prompt.max_tokens")

    ctx_budget = int(avail * budget.context_share) if (context or path) else 0
    section, lead, used, ctx_special = _context_tokens(
        template, tok, ids, context, path, repo_name, ctx_budget)
    rest = avail - len(section) - len(lead)

    # Suffix first within its share, prefix gets the rest; then hand unused prefix budget back.
    suf_budget = int(rest * budget.suffix_share) if uses_suffix else 0
    suf_toks, suf_cut = fit_head(tok, suffix, suf_budget) if uses_suffix else ([], False)
    pre_toks, pre_cut = fit_tail(tok, prefix, rest - len(suf_toks))
    if uses_suffix and suf_cut and len(pre_toks) + len(suf_toks) < rest:
        suf_toks, suf_cut = fit_head(tok, suffix, rest - len(pre_toks))

    slots = {PREFIX: lead + pre_toks, SUFFIX: suf_toks}
    tokens = head + section
    for part in layout:
        tokens += slots[part] if part in slots else ids[part]
    return Prompt(tokens=tokens, template=template.name,
                  order=order if order is not None else (template.orders[0] if template.orders else None),
                  n_context=len(section) + len(lead), n_prefix=len(pre_toks),
                  n_suffix=len(suf_toks), n_special=n_special + ctx_special,
                  context_files=used, prefix_truncated=pre_cut, suffix_truncated=suf_cut)
