"""Suggestion cache with typing-through.

An entry remembers where a suggestion was made (the prefix length and its last characters, the
start of the suffix) and its text, which may still be growing while the model generates. A new
request hits the entry when the document differs only by characters typed at the cursor that
match the start of the suggestion: the remainder is served without a model call. Zero typed
characters is an exact hit.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

# How much of the prefix / suffix identifies the place of a suggestion.
PREFIX_KEY_CHARS = 2048
SUFFIX_KEY_CHARS = 512


@dataclass
class CacheEntry:
    """A suggestion (finished or in flight) and where it was made."""

    uri: str
    prefix_len: int
    prefix_key: str
    suffix_key: str
    text: str = ""
    """The suggestion so far (final once ``done``)."""
    done: bool = False
    cut_at_line_end: bool = False
    """The request that made it answers only its first line (single-line mode)."""
    job: object | None = field(default=None, repr=False)
    """The in-flight generation job, while it runs."""
    candidates: list[str] = field(default_factory=list)
    """Once done, when several were generated: all suggestions in the order served (``text``
    is the first); typing through any of them keeps it."""

    def typed_since(self, prefix: str, suffix: str) -> str | None:
        """Characters typed at this entry's cursor to reach (prefix, suffix), or None when the
        document changed in another way."""
        if len(prefix) < self.prefix_len or suffix[:SUFFIX_KEY_CHARS] != self.suffix_key:
            return None
        start = self.prefix_len - len(self.prefix_key)
        if prefix[start:self.prefix_len] != self.prefix_key:
            return None
        return prefix[self.prefix_len:]

    def remainder(self, typed: str) -> str | None:
        """What is left to suggest after ``typed``, if the suggestion agrees with it so far."""
        if self.text.startswith(typed):
            return self.text[len(typed):]
        if not self.done and typed.startswith(self.text):
            return ""  # still generating and consistent: the rest may yet match
        rest = self.remainders(typed)
        return rest[0] if rest else None

    def remainders(self, typed: str) -> list[str]:
        """What is left of each suggestion that agrees with ``typed``, in the order served."""
        return [t[len(typed):] for t in (self.candidates or [self.text]) if t.startswith(typed)]


def make_entry(uri: str, prefix: str, suffix: str) -> CacheEntry:
    return CacheEntry(uri=uri, prefix_len=len(prefix), prefix_key=prefix[-PREFIX_KEY_CHARS:],
                      suffix_key=suffix[:SUFFIX_KEY_CHARS])


class SuggestionCache:
    """Most-recent-first entries per document, bounded in total."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._entries: collections.OrderedDict[int, CacheEntry] = collections.OrderedDict()

    def add(self, entry: CacheEntry) -> None:
        self._entries[id(entry)] = entry
        self._entries.move_to_end(id(entry))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def remove(self, entry: CacheEntry) -> None:
        self._entries.pop(id(entry), None)

    def lookup(self, uri: str, prefix: str, suffix: str) -> tuple[CacheEntry, str] | None:
        """The newest entry that (prefix, suffix) types through, with the characters typed."""
        for entry in reversed(self._entries.values()):
            if entry.uri != uri:
                continue
            typed = entry.typed_since(prefix, suffix)
            if typed is None:
                continue
            rest = entry.remainder(typed)
            if rest is None or (entry.done and not rest):  # diverged, or fully typed through
                continue
            self._entries.move_to_end(id(entry))
            return entry, typed
        return None

    def clear(self, uri: str | None = None) -> None:
        if uri is None:
            self._entries.clear()
        else:
            for key in [k for k, e in self._entries.items() if e.uri == uri]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
