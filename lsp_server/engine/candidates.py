"""More candidates for one cursor, decoded as parallel sequences that share the prompt's KV cache.

A request for one suggestion generates the greedy text on KV sequence 0. A
:class:`CandidatesRequest` then asks for alternatives to it, cheaply:

- **branches**: after the greedy text's leading whitespace (the indentation, where the first
  token says little), each of the next-likeliest first tokens, continued greedily;
- **samples**: continuations sampled at a temperature from the prompt's end.

Each alternative is its own KV sequence, made by copying sequence 0's cells (llama.cpp shares
them, nothing is evaluated again), and all of them advance together: one batch of one token per
sequence per step, so on a memory-bound CPU n sequences cost little more than one. The stop
rules (``cut``) end each one where they would end a suggestion.

Then every distinct candidate is scored by what the model could not read: the log-probability
of the code after the cursor (``scored_text``) following the candidate, evaluated as further
tokens of its sequence (all candidates in a few batches). A prefix-only model thus ranks
candidates by the joint likelihood of candidate and suffix. Sequence 0 is left as it was
(prompt + greedy text), so the next keystroke reuses it; all other sequences are removed.
"""

from __future__ import annotations

import codecs
import ctypes
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence, TypeVar

import numpy as np

from .healing import Pieces, restrict
from .types import Cut, StopReason

#: KV sequences the engine's context is created with: 0 is the live prompt, 1–7 the
#: alternatives of up to 8 candidates (completion.candidates), the last a copy of 0 for scoring.
#: llama.cpp reserves one row of logits per sequence for the context's lifetime.
MAX_SEQUENCES = 9
#: Rows of logits per scoring batch, beyond the first candidate's (a candidate's scored tokens
#: always go in one batch: with 16 scored tokens that is ~17 rows, so each candidate gets a batch
#: of its own). Each row is n_vocab floats (1 MiB for Gemma's vocabulary) and llama.cpp keeps an
#: output buffer as large as the largest batch asked for, for the context's lifetime: grouping
#: candidates would save a decode call each at that memory.
SCORE_ROWS = 8


@dataclass(frozen=True)
class CandidatesRequest:
    """Alternatives to a greedy suggestion, and scores for all of them."""

    tokens: list[int]
    """The prompt the greedy suggestion was generated from."""
    first: list[int]
    """The greedy suggestion's tokens as generated."""
    first_text: str
    """Its text after the stop rules (``first``'s tokens may run past it)."""
    first_logprobs: Sequence[float] = ()
    """Per token of ``first``, its log-probability when generated."""
    branches: int = 3
    samples: int = 0
    temperature: float = 0.7
    seed: int = 0
    max_tokens: int = 64
    stop_ids: frozenset[int] = frozenset()
    cut: Cut | None = None
    """Where the stop rules end a candidate's text and which rule ends it (None: not yet)."""
    scored_text: str = ""
    """Text whose likelihood after each candidate is measured ("" for none)."""
    score_tokens: int = 32
    """Tokens of ``scored_text`` scored at most."""
    tokenize: Callable[[str], list[int]] | None = None
    time_budget_s: float | None = None
    lead: str = ""
    """Token healing, as the greedy suggestion was generated (``GenerationRequest.lead``): every
    candidate's first token starts with it, and no candidate's text holds it."""


class SuffixScored:
    """A candidate's per-token scores of the code after it (``suffix_logprobs``; None: not
    scored), summed and counted."""

    suffix_logprobs: Sequence[float] | None

    @property
    def suffix_logprob(self) -> float | None:
        """log p(the scored text | prompt + candidate); None when not scored."""
        return None if self.suffix_logprobs is None else sum(self.suffix_logprobs)

    @property
    def n_suffix(self) -> int:
        return len(self.suffix_logprobs or ())


@dataclass
class EngineCandidate(SuffixScored):
    """One candidate and what the model thinks of it."""

    text: str
    origin: str
    """'greedy', 'branch' or 'sample'."""
    tokens: list[int] = field(default_factory=list)
    logprob: float = 0.0
    """Sum of the log-probabilities of ``tokens`` given the prompt."""
    suffix_logprobs: list[float] | None = None
    """Per scored token of the text after the candidate, its log-probability (None: not scored)."""
    order: int = 0
    """Its place in the generation order: greedy 0, the branches in their first token's
    likelihood order, then the samples by seed."""
    repeats: tuple[tuple[str, int], ...] = ()
    """The later candidates (origin, order) that came out as the same text, dropped as repeats:
    what a replay of a smaller count needs to know which candidates it would have had."""
    stop: str = ""
    """Why its text ended: the stop rule that cut it or an engine stop reason ("" for the greedy
    candidate, whose generation knows it)."""
    # decoding state
    seq: int = 0
    evaluated: int = 0
    """Of ``tokens``, how many the sequence's KV cache holds."""
    done: bool = False
    raw: str = ""
    decoder: Any = None
    rng: np.random.Generator | None = None


class _Made(Protocol):
    origin: str
    order: int
    repeats: tuple[tuple[str, int], ...]


M = TypeVar("M", bound=_Made)


def fold_repeats(cands: Iterable[M], key: Callable[[M], str | None]) -> list[M]:
    """The first candidate of each ``key``, in order, each noting the later ones with that key
    (origin and order, theirs included) in its ``repeats``; a None key drops the candidate.
    The engine, the remote samples and the ranking all drop repeats through this."""
    seen: dict[str, M] = {}
    for c in cands:
        k = key(c)
        if k is None:
            continue
        first = seen.setdefault(k, c)
        if first is not c:
            first.repeats = (*first.repeats, (c.origin, c.order), *c.repeats)
    return list(seen.values())


def log_softmax_at(logits: np.ndarray, token: int) -> float:
    """log p(token) under ``logits`` (one row)."""
    m = float(logits.max())
    return float(logits[token]) - m - float(np.log(np.exp(logits - m).sum()))


def pick(logits: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
    """Greedy at temperature 0 (or without a generator), else a sample."""
    if temperature <= 0 or rng is None:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


def kept_tokens(pieces: Sequence[str], text: str) -> int:
    """How many leading tokens (with texts ``pieces``) lie wholly inside ``text``."""
    n, used = 0, 0
    for piece in pieces:
        if used + len(piece) > len(text):
            break
        used += len(piece)
        n += 1
    return n


class Batch:
    """A llama.cpp batch filled token by token (each token may belong to several sequences)."""

    def __init__(self, llm: Any, size: int) -> None:
        from llama_cpp import _internals

        self.llm = llm
        self._b = _internals.LlamaBatch(n_tokens=size, embd=0, n_seq_max=MAX_SEQUENCES)
        self.rows = 0

    def clear(self) -> None:
        self._b.batch.n_tokens = 0
        self.rows = 0

    def add(self, token: int, pos: int, seqs: Sequence[int], logits: bool) -> int:
        """Add a token; returns its index in the batch (for :meth:`logits`)."""
        b = self._b.batch
        i = b.n_tokens
        b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, len(seqs), logits
        for j, s in enumerate(seqs):
            b.seq_id[i][j] = s
        b.n_tokens = i + 1
        self.rows += logits
        return i

    @property
    def size(self) -> int:
        return self._b.batch.n_tokens

    def decode(self) -> None:
        self.llm._ctx.decode(self._b)

    def logits(self, i: int) -> np.ndarray:
        """The logits row of batch index ``i`` (valid until the next decode)."""
        ptr = self.llm._ctx.get_logits_ith(i)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                     shape=(self.llm.n_vocab(),))

    def close(self) -> None:
        self._b.close()


class CandidateDecoder:
    """Runs one :class:`CandidatesRequest` on a ``Llama`` whose sequence 0 holds the prompt and
    the greedy text's kept tokens (the engine prepares it)."""

    def __init__(self, llm: Any, req: CandidatesRequest, n_ctx: int,
                 cancelled: Callable[[], bool], vocabulary: Pieces | None = None) -> None:
        self.llm = llm
        self.req = req
        self.n_ctx = n_ctx
        self.cancelled = cancelled
        self.deadline = time.monotonic() + req.time_budget_s if req.time_budget_s else None
        self.prompt = list(req.tokens)
        self.lead = req.lead.encode()
        self.allowed = vocabulary.allowed(self.lead) \
            if self.lead and vocabulary is not None else None
        """The tokens a candidate may start with (None: any)."""
        self.pieces = self._pieces(req.first)
        self.kept = kept_tokens(self.pieces, req.first_text)
        self.stopped = ""
        """Why decoding stopped early ("" when it ran to the end)."""

    def _piece(self, token: int, first: bool = False) -> str:
        """A token's text; a candidate's first token without the healed lead."""
        b = self.llm.detokenize([token])
        return (b[len(self.lead):] if first else b).decode("utf-8", errors="replace")

    def _pieces(self, tokens: Sequence[int]) -> list[str]:
        return [self._piece(t, k == 0) for k, t in enumerate(tokens)]

    def _first(self, logits: np.ndarray) -> np.ndarray:
        """``logits`` of a candidate's first token: only tokens that start with the lead."""
        return logits if self.allowed is None else restrict(logits, self.allowed)

    def _late(self) -> bool:
        if self.cancelled():
            self.stopped = "cancelled"
        elif self.deadline is not None and time.monotonic() > self.deadline:
            self.stopped = "time_budget"
        return bool(self.stopped)

    # --- the candidates ----------------------------------------------------------------------
    def run(self) -> list[EngineCandidate]:
        """The greedy candidate first, then the distinct alternatives; scored when asked."""
        req = self.req
        greedy = EngineCandidate(req.first_text, "greedy", list(req.first[:self.kept]),
                                 float(sum(req.first_logprobs[:self.kept])))
        n_alt = max(0, min(req.branches + req.samples, MAX_SEQUENCES - 2))
        # The unified KV cache holds the prompt once; each alternative adds its own tokens, each
        # candidate its scored ones (the engine holds cells for them beside the prompt's window:
        # ModelSession.candidates_cells).
        room = self.n_ctx - len(self.prompt) - len(req.first) - (req.score_tokens + 8)
        n_alt = max(0, min(n_alt, room // (req.max_tokens + req.score_tokens + 8)))
        batch = Batch(self.llm, max(self.llm.n_batch, MAX_SEQUENCES))
        try:
            alts = self._alternatives(batch, n_alt) if n_alt else []
            cands = fold_repeats([greedy] + alts, lambda c: c.text.rstrip())
            if req.scored_text and req.tokenize is not None and not self._late():
                self._score(batch, cands)
            return cands
        finally:
            mem = self.llm._ctx
            for s in range(1, MAX_SEQUENCES):
                mem.kv_cache_seq_rm(s, -1, -1)
            batch.close()

    def _alternatives(self, batch: Batch, n_alt: int) -> list[EngineCandidate]:
        req, llm, P = self.req, self.llm, len(self.prompt)
        # The branch point: after the greedy text's leading whitespace tokens.
        w = 0
        while w < self.kept and not self.pieces[w].strip():
            w += 1
        b = P + w
        full = self.prompt + list(req.first[:w])
        n_branch = min(req.branches, n_alt)
        branch_seqs = list(range(1, 1 + n_branch))
        sample_seqs = list(range(1 + n_branch, 1 + n_alt))
        mem = llm._ctx
        # Copy the shared cells, then evaluate the token before each start point in the new
        # sequences, for the logits there (the greedy generation did not keep them).
        for s in branch_seqs:
            mem.kv_cache_seq_cp(0, s, 0, b - 1)
        for s in sample_seqs:
            mem.kv_cache_seq_cp(0, s, 0, P - 1)
        batch.clear()
        if b == P:
            i_branch = i_sample = batch.add(full[b - 1], b - 1, branch_seqs + sample_seqs, True)
        else:
            i_branch = batch.add(full[b - 1], b - 1, branch_seqs, True) if branch_seqs else -1
            i_sample = batch.add(self.prompt[P - 1], P - 1, sample_seqs, True) \
                if sample_seqs else -1
        batch.decode()
        cands: list[EngineCandidate] = []
        if branch_seqs:
            logits = batch.logits(i_branch).copy()
            ranked = self._first(logits) if w == 0 else logits
            taken = {req.first[w]} if w < len(req.first) else set()
            taken |= set(req.stop_ids)
            k = min(n_branch + len(taken) + 1, len(ranked) - 1)
            top = np.argpartition(-ranked, k)[:k]  # the k likeliest, unordered (no full sort)
            order = top[np.argsort(-ranked[top])]
            firsts = [int(t) for t in order if int(t) not in taken and ranked[t] > -np.inf]
            head = float(sum(req.first_logprobs[:w]))
            for s, tok in zip(branch_seqs, firsts[:n_branch]):
                c = EngineCandidate("", "branch", list(req.first[:w]), head, order=s, seq=s,
                                    evaluated=w)
                c.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                c.raw = "".join(self.pieces[:w])
                self._append(c, tok, log_softmax_at(logits, tok))
                cands.append(c)
        if sample_seqs:
            logits = batch.logits(i_sample).copy()
            for k, s in enumerate(sample_seqs):
                c = EngineCandidate("", "sample", order=s, seq=s)
                c.rng = np.random.default_rng([req.seed, k])
                c.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                tok = pick(self._first(logits), req.temperature, c.rng)
                if tok in req.stop_ids:
                    c.done, c.stop = True, StopReason.STOP_TOKEN.value
                else:
                    self._append(c, tok, log_softmax_at(logits, tok))
                cands.append(c)
        self._decode(batch, cands)
        return [c for c in cands if c.done]

    def _append(self, c: EngineCandidate, tok: int, logprob: float) -> None:
        """Add a generated token to ``c``; ends it on the stop rules or the token limit."""
        req = self.req
        b = self.llm.detokenize([tok])
        c.raw += c.decoder.decode(b[len(self.lead):] if not c.tokens else b)
        c.tokens.append(tok)
        c.logprob += logprob
        cut = req.cut(c.raw) if req.cut is not None else None
        if cut is not None:
            c.text, c.done, c.stop = c.raw[:cut[0]], True, cut[1]
        elif len(c.tokens) >= req.max_tokens:
            c.text, c.done, c.stop = c.raw, True, StopReason.MAX_TOKENS.value
        else:
            c.text = c.raw

    def _decode(self, batch: Batch, cands: list[EngineCandidate]) -> None:
        """Advance every unfinished candidate one token per step, all in one batch."""
        P = len(self.prompt)
        while True:
            alive = [c for c in cands if not c.done]
            if not alive or self._late():
                return
            batch.clear()
            rows = []
            for c in alive:
                pos = P + len(c.tokens) - 1
                rows.append(batch.add(c.tokens[-1], pos, [c.seq], True))
            batch.decode()
            for c, i in zip(alive, rows):
                c.evaluated = len(c.tokens)
                logits = batch.logits(i)
                tok = pick(logits, self.req.temperature if c.origin == "sample" else 0.0, c.rng)
                if tok in self.req.stop_ids:
                    c.done, c.stop = True, StopReason.STOP_TOKEN.value
                    continue
                self._append(c, tok, log_softmax_at(logits, tok))

    # --- scoring ------------------------------------------------------------------------------
    def _score(self, batch: Batch, cands: list[EngineCandidate]) -> None:
        """log p(scored text | prompt + candidate) for every candidate."""
        req, llm, P = self.req, self.llm, len(self.prompt)
        mem = llm._ctx
        free = MAX_SEQUENCES - 1  # the greedy candidate is scored on a copy of sequence 0
        mem.kv_cache_seq_rm(free, -1, -1)
        mem.kv_cache_seq_cp(0, free, 0, P + self.kept)
        cands[0].seq, cands[0].evaluated = free, self.kept
        jobs = []
        for c in cands:
            pieces = self._pieces(c.tokens)
            kept = kept_tokens(pieces, c.text)
            fragment = c.text[sum(len(p) for p in pieces[:kept]):]
            n_frag = len(req.tokenize(fragment)) if fragment else 0
            scored = req.tokenize(fragment + req.scored_text)[: n_frag + req.score_tokens]
            # Feed from the token before the first scored one (its logits predict it).
            start = min(c.evaluated, kept)
            full = self.prompt + c.tokens[:kept]
            q = P + start - 1
            feed = full[q:] + scored
            if len(feed) > llm.n_batch:
                continue  # more than one batch of its own (a very long candidate): unscored
            mem.kv_cache_seq_rm(c.seq, q, -1)
            jobs.append((c, q, feed, len(full) - 1 - q, n_frag))
        # Several candidates per batch, within the batch size and the logits rows.
        pending = list(jobs)
        while pending and not self._late():
            batch.clear()
            group = []
            while pending:
                c, q, feed, first_row, n_frag = pending[0]
                n_rows = len(feed) - first_row
                if group and (batch.size + len(feed) > llm.n_batch
                              or batch.rows + n_rows > SCORE_ROWS):
                    break
                pending.pop(0)
                idx = [batch.add(t, q + k, [c.seq], k >= first_row and k < len(feed) - 1)
                       for k, t in enumerate(feed)]
                group.append((c, feed, first_row, n_frag, idx))
            batch.decode()
            for c, feed, first_row, n_frag, idx in group:
                per_token = []
                for k in range(first_row, len(feed) - 1):
                    lp = log_softmax_at(batch.logits(idx[k]), feed[k + 1])
                    if k - first_row < n_frag:
                        c.logprob += lp  # the candidate's own last characters
                    else:
                        per_token.append(lp)
                c.suffix_logprobs = per_token
