"""Which candidate is shown first: a selector that uses what the model could not read.

A prefix-only model writes a line without seeing the code after the cursor; a FIM model sees it
but still makes mistakes a parser would catch. Given the candidates of one cursor
(:mod:`lsp_server.engine.candidates`), the order is, key by key:

1. a candidate that repeats the suffix's next line (a statement the user already has; closing
   brackets alone repeat legitimately) goes last;
2. fewer syntax errors in the file with the candidate in place (:mod:`.syntax`; only a
   difference between candidates counts);
3. a higher score: the log-probability of the candidate given the prompt plus, when the model
   did not see the suffix, the log-probability of the suffix's first tokens after it — the joint
   likelihood of candidate and the code that follows.

Empty candidates and repeats are dropped. With the selector off the candidates keep their
generation order (greedy first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..engine.candidates import SuffixScored, fold_repeats
from .syntax import syntax_errors


@dataclass
class Candidate(SuffixScored):
    """One suggestion for a cursor and the scores that ranked it."""

    text: str
    origin: str = "greedy"
    """'greedy', 'branch' or 'sample' (how it was generated)."""
    logprob: float = 0.0
    suffix_logprobs: tuple[float, ...] | None = None
    """Per scored token of the code after the cursor, its log-probability given the prompt,
    the candidate and the tokens before it (None: not scored)."""
    order: int = 0
    """Its place in the generation order (0: greedy; :class:`..engine.candidates.EngineCandidate`)."""
    repeats: tuple[tuple[str, int], ...] = ()
    """The later candidates (origin, order) that came out as the same text and were dropped."""
    stop: str = ""
    """Why its text ended (:attr:`..backend.Completion.stop`'s form)."""
    syntax_errors: int | None = None
    echoes_suffix: bool = False
    score: float = 0.0

    def explain(self) -> dict[str, Any]:
        """The scores, for ``codefill complete --explain`` and the logs."""
        return {"origin": self.origin, "order": self.order, "stop": self.stop,
                "repeats": [list(r) for r in self.repeats], "score": round(self.score, 3),
                "logprob": round(self.logprob, 3),
                "suffix_logprob": None if self.suffix_logprob is None
                else round(self.suffix_logprob, 3),
                "suffix_tokens": self.n_suffix,
                "suffix_token_logprobs": [round(x, 3) for x in self.suffix_logprobs or ()],
                "syntax_errors": self.syntax_errors, "echoes_suffix": self.echoes_suffix}


def next_line(suffix: str) -> str:
    """The first non-blank line after the cursor's line, stripped ("" when none)."""
    for line in suffix.split("\n")[1:]:
        if line.strip():
            return line.strip()
    return ""


def echoes(text: str, following: str) -> bool:
    """``text`` repeats the suffix's next line — a statement the user already has. Lines
    without a word character (``],``, ``)``, ``}``) repeat legitimately and do not count."""
    line = text.strip()
    return bool(following) and line == following and any(ch.isalnum() for ch in line)


def distinct(cands: Iterable[Candidate]) -> list[Candidate]:
    """Non-empty candidates, the first of each text (the later ones noted in its ``repeats``)."""
    return fold_repeats(cands, lambda c: c.text if c.text.strip() else None)


def rank(cands: Iterable[Candidate], *, prefix: str, suffix: str, language: str,
         selector: bool = True) -> list[Candidate]:
    """``cands`` best first (see the module's docstring)."""
    out = distinct(cands)
    for c in out:
        c.score = c.logprob + (c.suffix_logprob or 0.0)
    if not selector or len(out) < 2:
        return out
    following = next_line(suffix)
    errors = syntax_errors(language, prefix, [c.text for c in out], suffix)
    for c, n in zip(out, errors):
        c.syntax_errors = n
        c.echoes_suffix = echoes(c.text, following)
    least = min((n for n in errors if n is not None), default=0)
    scored = any(c.suffix_logprob is not None for c in out)
    return sorted(out, key=lambda c: (
        c.echoes_suffix,
        (c.syntax_errors or 0) - least if c.syntax_errors is not None else 0,
        scored and c.suffix_logprob is None,
        -c.score))
