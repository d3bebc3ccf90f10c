"""Packing ranked files into a token budget: whole when near and affordable, else outlines.

Costs are counted with the model's tokenizer, headers included, so every file the packer
chooses also fits when the assembler lays out the prompt (see :func:`file_cost`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from ..prompt.assemble import ContextFile
from ..prompt.tokens import Tokenizer
from .outline import OutlineItem, order_items
from .selection import Candidate, ContextRow

_IDENT = re.compile(r"[A-Za-z_$][\w$]*")


class TokenCounter:
    """Token counts of texts with one tokenizer, memoised (LRU): files repeat across requests."""

    def __init__(self, tok: Tokenizer, capacity: int = 4096) -> None:
        self.tok = tok
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def __call__(self, text: str) -> int:
        n = self._cache.get(text)
        if n is not None:
            self._cache.move_to_end(text)
            return n
        n = len(self.tok.tokenize(text)) if text else 0
        self._cache[text] = n
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return n


def file_cost(count: Callable[[str], int], path: str, text: str) -> int:
    """Tokens a context file takes in either assembler style, with a margin of 2.

    Separator style: ``SEP path\\n text``; comment style: ``# file: path\\n text\\n``. The
    header is counted as the longer comment form, plus the separator and a final newline.
    """
    return count(text) + count(f"// file: {path}\n") + 2


def reserve(count: Callable[[str], int], current_path: str, repo_name: str) -> int:
    """Tokens the assembler spends around the context files: repo header, current-file header."""
    return count((repo_name or "workspace") + "\n") + 1 + count(f"{current_path}\n") + 1


def identifiers(text: str) -> frozenset[str]:
    return frozenset(_IDENT.findall(text))


@dataclass(frozen=True)
class PackLimits:
    budget: int
    max_files: int
    whole_distance: int
    whole_share: float = 0.5
    """A whole file may take at most this share of the budget; beyond it, an outline."""
    min_tokens: int = 24
    """A cut outline smaller than this is not worth its header."""


@dataclass(frozen=True)
class Source:
    """What the packer needs of a candidate file."""

    text: str
    outline: Callable[[], list[OutlineItem]]


# Code averages 3-4 characters a token; a text longer than this many characters per token of
# room cannot fit, so it is not tokenized at all (huge files cost nothing on the first request).
_MAX_CHARS_PER_TOKEN = 12


def _too_long(text: str, room: int) -> bool:
    return len(text) > max(room, 0) * _MAX_CHARS_PER_TOKEN


def _cut(count: Callable[[str], int], path: str, items: list[OutlineItem], room: int
         ) -> tuple[str, int]:
    """Longest prefix of ``items`` whose cost fits ``room`` (binary search on the prefix)."""
    chars, hi = 0, 0
    for item in items:  # prefixes that are hopeless by length are never tokenized
        chars += len(item.text)
        if chars > room * _MAX_CHARS_PER_TOKEN:
            break
        hi += 1
    lo, best = 1, ("", 0)
    while lo <= hi:
        mid = (lo + hi) // 2
        text = "".join(i.text for i in items[:mid])
        c = file_cost(count, path, text)
        if c <= room:
            best, lo = (text, c), mid + 1
        else:
            hi = mid - 1
    return best


def pack(cands: list[Candidate], load: Callable[[str], Source | None],
         count: Callable[[str], int], used: frozenset[str], limits: PackLimits,
         label: Callable[[str], str] = lambda p: p
         ) -> tuple[list[tuple[Candidate, ContextFile, ContextRow]], list[ContextRow]]:
    """Choose forms for candidates in rank order until the budget or the file limit runs out.

    Returns (chosen: candidate, file, row), skipped rows. ``label`` maps a path to the name the
    model sees (multi-root workspaces prefix the root's name).
    """
    chosen: list[tuple[Candidate, ContextFile, ContextRow]] = []
    skipped: list[ContextRow] = []
    left = limits.budget

    def skip(c: Candidate, why: str) -> None:
        skipped.append(ContextRow(label(c.path), c.distance, c.reason, f"skipped: {why}", 0))

    for c in cands:
        if len(chosen) >= limits.max_files:
            skip(c, "file limit")
            continue
        if left < limits.min_tokens:
            skip(c, "budget")
            continue
        src = load(c.path)
        if src is None:
            skip(c, "unreadable or excluded")
            continue
        name = label(c.path)
        big = _too_long(src.text, left)
        whole = left + 1 if big else file_cost(count, name, src.text)
        near = c.distance <= limits.whole_distance and whole <= limits.whole_share * limits.budget
        items = order_items(src.outline(), used)
        n_used = sum(1 for i in items if i.names & used)
        if near and whole <= left:
            text, form, cost = src.text, "whole", whole
        else:
            outline_text = "".join(i.text for i in items)
            cost = left + 1 if _too_long(outline_text, left) else \
                file_cost(count, name, outline_text)
            if whole <= cost * 1.25 and whole <= left:  # the outline saves little: take it all
                text, form, cost = src.text, "whole", whole
            elif cost <= left and outline_text.strip():
                text, form = outline_text, "outline"
            else:
                text, cost = _cut(count, name, items, left)
                form = "outline (cut)"
                if not text.strip() or cost < limits.min_tokens:
                    skip(c, "budget")
                    continue
        left -= cost
        chosen.append((c, ContextFile(name, text),
                       ContextRow(name, c.distance, c.reason, form, cost, n_used)))
    return chosen, skipped
