"""The one path from a cursor to a suggestion.

Everything that completes goes through :class:`Completer`: the language server's pipeline (which
adds debounce, supersede, the cache, typing-through and speculation around it), ``codefill
complete``, ``codefill bench`` and the benchmark scripts. Per suggestion:

1. the budget: the backend splits its context window (generation allowance, then repository
   context, suffix and prefix) in its own units (:meth:`CompletionBackend.budget`);
2. the context: the context source fills exactly the share the assembler will allow it;
3. the prompt and the generation: the backend assembles and submits (:meth:`generate`);
4. the stop rules cut the text as it streams and the post-processors clean the result
   (:class:`Generation`), the same code whether the caller streams or waits.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from ..config import Config
from ..engine.types import EngineError, GenerationStats, StopReason, TokenStream
from ..prompt.assemble import Budget, ContextFile
from ..prompt.tokens import Tokenizer
from ..settings import Settings
from ..errors import CodefillError
from .backend import Completion, CompletionBackend, InfillRequest, Listener
from .privacy import mask_secrets, refusal
from .ranking import Candidate, rank
from .rules import SuggestionContext, decide_single_line, first_cut, postprocess

log = logging.getLogger("codefill.completion")


@dataclass(frozen=True)
class Cursor:
    """A cursor in a file: the text either side of it and where the file is."""

    prefix: str
    suffix: str
    path: str = ""
    """Workspace-relative path shown to the model ("" for none)."""
    file_path: str = ""
    """Absolute path on disk, for repository context ("" for text that is not a file)."""
    language: str = ""
    """LSP languageId, for the stop rules ("" if unknown)."""


class Selection(Protocol):
    """What a context source answers (:class:`~lsp_server.context.ContextSelection`)."""

    files: list[ContextFile]
    status: str
    elapsed_ms: float
    cached: bool


class ContextSource(Protocol):
    """Repository context for a cursor within a token budget (the workspace index)."""

    def select_context(self, path: str, prefix: str, suffix: str, tokenizer: Tokenizer,
                       budget_tokens: int) -> Selection: ...


def suggestion_context(cursor: Cursor, config: Config, single_line: bool | None = None
                       ) -> SuggestionContext:
    """What the stop rules see at ``cursor``; ``single_line`` None decides by
    ``completion.mode`` ('single' and 'multi' force it, 'auto' decides per cursor)."""
    if single_line is None:
        mode = config.completion.mode
        single_line = mode == "single" if mode != "auto" else \
            decide_single_line(cursor.prefix, cursor.suffix, cursor.language)
    return SuggestionContext.around(cursor.prefix, cursor.suffix, cursor.language, single_line)


class SecretDocument(CodefillError):
    """The document must not reach a model (:func:`~lsp_server.completion.privacy.refusal`)."""


def finished(raw: str, stop: str, ctx: SuggestionContext, disabled: frozenset[str]
             ) -> tuple[str, str]:
    """A generated text post-processed, and why it ended: ``stop`` (the stop rule that cut it
    or the engine's reason), with the post-processors that changed it."""
    text, changed_by = postprocess(raw, ctx, disabled)
    return text, stop + (f" (post-processed: {', '.join(changed_by)})" if changed_by else "")


class Generation:
    """One suggestion being generated: the engine's stream, cut by the stop rules as text
    arrives, cleaned by the post-processors when it ends."""

    def __init__(self, stream: TokenStream, ctx: SuggestionContext,
                 disabled: frozenset[str] = frozenset(), t0: float | None = None,
                 request: InfillRequest | None = None) -> None:
        self.stream = stream
        self.request = request
        """What was asked (the alternatives ask the same)."""
        self.alternatives: TokenStream | None = None
        """The engine's stream of alternatives, once asked for."""
        self.cancelled = False
        """Stopped by the caller (not by a stop rule)."""
        self.ctx = ctx
        self.disabled = disabled
        self.raw = ""
        """The text so far, cut by the stop rules but not post-processed."""
        self.stop = ""
        """The stop rule that cut the text ("" while none has)."""
        self.t0 = t0 if t0 is not None else time.monotonic()
        """When the request began (context selection and prompt assembly count)."""
        self._t_started = time.monotonic()

    def cancel(self) -> None:
        """Stop generating, the alternatives too (any thread)."""
        self.cancelled = True
        self.stream.cancel()
        if self.alternatives is not None:
            self.alternatives.cancel()

    def feed(self, piece: str) -> bool:
        """Add generated text; True when a stop rule cut it (the stream is then cancelled)."""
        if self.stop:
            return True
        self.raw += piece
        cut = first_cut(self.raw, self.ctx, self.disabled)
        if cut is None:
            return False
        self.raw, self.stop = self.raw[:cut[0]], cut[1]
        self.stream.cancel()
        return True

    def drain(self) -> None:
        """Feed the whole stream (blocking) until it ends or a stop rule cuts it."""
        for ev in self.stream:
            if self.feed(ev.text):
                break

    def finish(self, load_seconds: float = 0.0) -> Completion:
        """Wait for the engine to stop (blocking) and post-process; raises EngineError when the
        generation failed."""
        stats: GenerationStats = self.stream.wait()
        if stats.stop_reason is StopReason.ERROR:
            raise EngineError(stats.error or "generation failed")
        text, stop = finished(self.raw, self.stop or (stats.stop_reason.value
                                                      if stats.stop_reason else "end"),
                              self.ctx, self.disabled)
        return Completion(text=text, prompt=self.stream.prompt, stats=stats, stop=stop,
                          timings={
                              "model_load": load_seconds,
                              "prompt_build": self._t_started - self.t0,
                              "queued": stats.t_queued,
                              "prompt_eval": stats.t_prompt_eval,
                              "first_token": stats.t_first_token or 0.0,
                              "generation_total": stats.t_total,
                              "total": time.monotonic() - self.t0,
                          })


class Completer:
    """Turns cursors into suggestions with one backend and an optional repository-context
    source; the settings are the backend's holder (the same one the server updates)."""

    def __init__(self, backend: CompletionBackend, context: ContextSource | None = None,
                 log_fn: Callable[[str, str], None] | None = None) -> None:
        self.backend = backend
        self.settings: Settings = backend.settings
        self.context = context
        self._log = log_fn or (lambda level, text: log.debug(text))

    @property
    def config(self) -> Config:
        return self.settings.config

    def budget(self, max_tokens: int | None = None) -> Budget:
        """The prompt budget for a generation of ``max_tokens`` (default: prompt.max_tokens)."""
        return self.backend.budget(max_tokens or self.config.prompt.max_tokens)

    def select_context(self, cursor: Cursor, budget: Budget, tokens: int | None = None
                       ) -> Selection | None:
        """The context source's files for ``cursor`` within the share of ``budget`` the
        assembler gives context (or ``tokens``, when given)."""
        if self.context is None or not cursor.file_path:
            return None
        allowance = self.backend.context_allowance(budget) if tokens is None else tokens
        sel = self.context.select_context(cursor.file_path, cursor.prefix, cursor.suffix,
                                          self.backend.tokenizer, allowance)
        self._log("debug", f"{cursor.path}: context {sel.status}, {len(sel.files)} file(s) in "
                           f"{sel.elapsed_ms:.1f} ms{' (cached)' if sel.cached else ''}")
        return sel

    def request(self, cursor: Cursor, *, max_tokens: int | None = None,
                context: Sequence[ContextFile] | None = None, temperature: float = 0.0,
                seed: int = 0, prefill: bool = False, candidates: int | None = None
                ) -> InfillRequest:
        """The generation request for ``cursor``: budget, context, limits from the settings.
        ``context`` given: those files instead of asking the context source. A secret document
        raises :class:`SecretDocument`; secret values in any text are masked."""
        why = refusal(cursor.file_path or cursor.path, cursor.prefix + cursor.suffix, self.config)
        if why is not None:
            raise SecretDocument(why)
        n = max_tokens or self.config.prompt.max_tokens
        budget = self.backend.budget(n)
        sel = self.select_context(cursor, budget) if context is None else None
        files = tuple(context) if context is not None else tuple(sel.files) if sel else ()
        return InfillRequest(
            prefix=mask_secrets(cursor.prefix), suffix=mask_secrets(cursor.suffix),
            path=cursor.path, context=tuple(ContextFile(f.path, mask_secrets(f.text))
                                            for f in files),
            max_tokens=n, budget=budget,
            # A prefill has no user waiting on it: it runs until done or preempted.
            time_budget_s=None if prefill else self.config.engine.time_budget_ms / 1000,
            temperature=temperature, seed=seed, prefill=prefill,
            logprobs=(candidates or self.config.completion.candidates) > 1)

    def start(self, cursor: Cursor, ctx: SuggestionContext | None = None, *,
              max_tokens: int | None = None, context: Sequence[ContextFile] | None = None,
              temperature: float = 0.0, seed: int = 0,
              disabled_rules: frozenset[str] = frozenset(),
              listener: Listener | None = None, prefill: bool = False,
              candidates: int | None = None) -> Generation:
        """Select context, assemble and submit; the returned generation streams on
        ``listener`` (called on the engine's thread) or through :meth:`Generation.drain`.
        ``prefill``: only evaluate the prompt into the engine's cache, in the background."""
        t0 = time.monotonic()
        ctx = ctx or suggestion_context(cursor, self.config)
        req = self.request(cursor, max_tokens=max_tokens, context=context,
                           temperature=temperature, seed=seed, prefill=prefill,
                           candidates=candidates)
        stream = self.backend.generate(req, listener=listener)
        tokens = getattr(stream.prompt, "tokens", None)
        if tokens is not None:
            self._log("debug", f"{cursor.path}: prompt {len(tokens)} tokens "
                               f"({getattr(stream.prompt, 'template', '?')})")
        return Generation(stream, ctx, disabled_rules, t0, req)

    def rank(self, gen: Generation, result: Completion, cursor: Cursor,
             n: int | None = None, *, single_line: bool = False) -> list[Candidate]:
        """Up to ``n`` (completion.candidates) candidates for the finished ``gen``, best first
        (:mod:`.ranking`); [] when the backend offers one only (or the request was stopped).
        ``single_line``: candidates for the first line of a generation that went on past it.
        Blocks until the engine has decoded and scored them; :meth:`Generation.cancel` stops
        it."""
        n = n or self.config.completion.candidates
        if n < 2 or gen.request is None or gen.cancelled:
            return []
        ctx, first, shown, stop = gen.ctx, gen.raw, result.text, result.stop
        if single_line and not ctx.single_line:
            ctx = dataclasses.replace(ctx, single_line=True)
            cut = first_cut(first, ctx, gen.disabled)
            first = first[:cut[0]] if cut else first
            shown, stop = finished(first, cut[1] if cut else stop.split(" (", 1)[0], ctx,
                                   gen.disabled)

        def cut_at(text: str) -> tuple[int, str] | None:
            return first_cut(text, ctx, gen.disabled)

        alts = self.backend.alternatives(gen.stream, first, gen.request, n=n, cut=cut_at)
        if alts is None:
            return []
        gen.alternatives = alts
        if gen.cancelled:
            alts.cancel()
        stats = alts.wait()
        found = alts.result if isinstance(alts.result, list) else []
        if stats.stop_reason is StopReason.CANCELLED or not found:
            return []
        cands = []
        for i, c in enumerate(found):
            # The first is the greedy suggestion: post-processed already.
            text, why = (shown, stop) if i == 0 else finished(c.text, c.stop, ctx, gen.disabled)
            cands.append(Candidate(text, c.origin, c.logprob,
                                   None if c.suffix_logprobs is None else tuple(c.suffix_logprobs),
                                   c.order, c.repeats, why))
        ranked = rank(cands, prefix=cursor.prefix, suffix=cursor.suffix,
                      language=cursor.language, selector=self.config.completion.selector)
        self._log("debug", f"{cursor.path}: {len(ranked)} candidate(s) of {len(found)} in "
                           f"{stats.t_total * 1000:.0f} ms")
        return ranked

    def complete(self, cursor: Cursor, *, single_line: bool | None = None,
                 max_tokens: int | None = None, context: Sequence[ContextFile] | None = None,
                 temperature: float = 0.0, seed: int = 0,
                 disabled_rules: frozenset[str] = frozenset(),
                 candidates: int | None = None) -> Completion:
        """One suggestion, synchronously (waits for the backend to be ready first); with
        several ``candidates`` (default completion.candidates) the best-ranked one, the ranked
        list in ``Completion.candidates``."""
        t0 = time.monotonic()
        self.backend.wait_ready()
        gen = self.start(cursor, suggestion_context(cursor, self.config, single_line),
                         max_tokens=max_tokens, context=context, temperature=temperature,
                         seed=seed, disabled_rules=disabled_rules, candidates=candidates)
        gen.drain()
        result = gen.finish(self.backend.load_seconds)
        if candidates != 1:
            t_rank = time.monotonic()
            result.candidates = self.rank(gen, result, cursor, candidates)
            if result.candidates:
                result.text, result.stop = result.candidates[0].text, result.candidates[0].stop
            result.timings["candidates"] = time.monotonic() - t_rank
        result.timings["wait_ready"] = gen.t0 - t0
        result.timings["total"] = time.monotonic() - t0
        return result


def complete_text(backend: CompletionBackend, prefix: str, suffix: str = "", *, path: str = "",
                  language: str = "", **kwargs: Any) -> Completion:
    """One suggestion for text at a cursor, with no context source (the harness and ``codefill
    doctor``; ``context=`` may still pass files)."""
    return Completer(backend).complete(Cursor(prefix, suffix, path, "", language), **kwargs)

