"""Token healing: a cursor inside what the model would write as one token.

A prompt that ends where the user's cursor is often ends in the middle of a token the model was
trained on: after a space (``return `` is ``return`` + `` `` where the model knows ``return`` +
`` x``), inside a word (``self.con``), after a block comment's one-space indentation (`` `` where
the model knows `` *``). Continuing from such an unnatural split, the model's likeliest next
token is often the end of the line: the suggestion comes out empty or wrong. Healing takes the
prompt's last token back (its text is the ``lead``) and makes the first generated token one
that starts with that text, so the model picks the token boundary itself; the lead is then
left out of the suggestion, which still starts at the cursor.

:class:`Pieces` finds the tokens that start with given bytes without scanning the vocabulary:
every token's bytes sorted once, then two binary searches per request.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any, Hashable, Sequence

import numpy as np


#: What a lead of blanks may not grow into: the user's indentation and spacing stay as typed.
_BLANKS = b" \t\r\n"


def _after(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``prefix`` (None:
    there is none, ``prefix`` is all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class Pieces:
    """Every token's bytes, sorted, to find the tokens that start with a lead."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = list(pieces)
        order = sorted(range(len(self.pieces)), key=self.pieces.__getitem__)
        self._order = np.asarray(order, dtype=np.int64)
        self._sorted = [self.pieces[i] for i in order]
        # (n_vocab,) how many blank bytes each token starts with
        self._blank_run = np.fromiter((len(p) - len(p.lstrip(_BLANKS)) for p in self.pieces),
                                      dtype=np.int32, count=len(self.pieces))
        self._allowed: dict[bytes, np.ndarray] = {}

    @classmethod
    def of(cls, llm: Any) -> "Pieces":
        """The vocabulary of a llama-cpp-python ``Llama`` (control tokens have empty bytes, so
        no lead selects them)."""
        return cls([llm.detokenize([i]) for i in range(llm.n_vocab())])

    def starting_with(self, lead: bytes) -> np.ndarray:
        """The ids of the tokens whose bytes start with ``lead`` (non-empty)."""
        lo = bisect.bisect_left(self._sorted, lead)
        end = _after(lead)
        hi = len(self._sorted) if end is None else bisect.bisect_left(self._sorted, end)
        return self._order[lo:hi]

    def allowed(self, lead: bytes) -> np.ndarray:
        """The tokens a healed generation may start with: those that start with ``lead``; after
        a lead of blanks (an indentation, a space), not those that go on with more blank text
        (the indentation the user's editor chose, or a space typed, would grow, and a newline
        would end the line where the unhealed prompt already did)."""
        hit = self._allowed.get(lead)
        if hit is None:
            hit = self.starting_with(lead)
            if lead.strip(b" \t") == b"":
                # The lead itself, or the lead followed by something not blank.
                hit = hit[self._blank_run[hit] == len(lead)]
            if len(self._allowed) >= 256:
                self._allowed.clear()
            self._allowed[lead] = hit
        return hit


_CACHE: dict[Hashable, Pieces] = {}
_CACHE_LOCK = threading.Lock()


def pieces_of(llm: Any, key: Hashable) -> Pieces:
    """:meth:`Pieces.of` ``llm``, made once per process for each ``key`` (the model file): a
    vocabulary of 262,144 tokens takes about half a second."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            if len(_CACHE) >= 4:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = Pieces.of(llm)
        return _CACHE[key]


def restrict(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``logits`` with every token outside ``allowed`` impossible (a copy)."""
    out = np.full_like(logits, -np.inf)
    out[allowed] = logits[allowed]
    return out


def healable(piece: bytes) -> bool:
    """Whether a prompt ending in a token with these bytes is healed: a token of text inside a
    line (a cursor at a line's start ends with the newline, the split the model was trained
    on; control tokens have no bytes; a partial UTF-8 character is left alone)."""
    if not piece or b"\n" in piece:
        return False
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
