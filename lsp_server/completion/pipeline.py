"""The completion pipeline: from a cursor in an open document to a suggestion, as fast as typing.

Plain asyncio, no LSP types. Per request: cache / typing-through → adaptive debounce → supersede
older work for the document → one generation job through the completion path
(:class:`~lsp_server.completion.completer.Completer`: budget, context, prompt, stop rules and
post-processing, the same code the CLI and the benchmarks run). Jobs are separate from
requests: a request waits on a job, a job outlives a cancelled request for a short grace period
so that the next keystroke can adopt it (typing-through an in-flight suggestion whose text
already covers what was typed), and a document change that contradicts a job's suggestion
cancels it at once, so no stale text is ever served.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..config import Config
from ..engine.types import TokenEvent
from ..settings import Settings
from .backend import Completion, CompletionBackend
from .cache import CacheEntry, SuggestionCache, make_entry
from .debounce import TypingPace
from .privacy import refusal
from .completer import Completer, ContextSource, Generation, suggestion_context
from .requests import CompletionRequest, Counters, Suggestion, first_line
from .rules import SuggestionContext, postprocess

__all__ = ["CompletionRequest", "Counters", "Pipeline", "Suggestion", "first_line"]

Log = Callable[[str, str], None]  # (level, message)

# Reasons for an empty answer from a generation (see _wait).
DIVERGED = "the document changed"
CANCELLED = "generation cancelled"
# A job whose requests were all cancelled keeps running this long, waiting to be adopted.
ORPHAN_GRACE_S = 0.3


@dataclass
class Job:
    """One generation on the engine, feeding a cache entry."""

    entry: CacheEntry
    ctx: SuggestionContext
    suffix_len: int
    answer_first_line: bool
    speculative: bool = False
    gen: Generation | None = None
    task: asyncio.Task | None = None
    waiters: int = 0
    cancelled: bool = False
    stop: str = ""
    error: str = ""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    orphan_timer: asyncio.TimerHandle | None = None
    ranking: bool = False
    """The suggestion is served; its alternatives are being generated and ranked."""
    ranked: asyncio.Event = field(default_factory=asyncio.Event)

    def cancel(self) -> None:
        self.cancelled = True
        if self.gen is not None:
            self.gen.cancel()
        elif self.task is not None:
            self.task.cancel()


class Pipeline:
    """Serves completion requests for every open document of one language server."""

    def __init__(self, settings: Settings | Config,
                 session: Callable[[], CompletionBackend | None], log: Log | None = None,
                 context: ContextSource | None = None,
                 unavailable: Callable[[], str] | None = None) -> None:
        self.settings = Settings.of(settings)
        self._session = session
        self._unavailable = unavailable or (lambda: "the model is not loaded yet")
        self._context = context
        self._log = log or (lambda level, msg: None)
        self.cache = SuggestionCache()
        self.counters = Counters()
        self.last_reason = ""
        self.last_latency_s: float | None = None
        self._seq: dict[str, int] = {}
        self.pace = TypingPace()
        self._jobs: dict[str, list[Job]] = {}
        # uri → (the request, the suggestion it was served): the request whole, so speculation
        # after an accept keeps its path, file and language (the prompt's start, hence the KV cache)
        self._last_served: dict[str, tuple[CompletionRequest, list[str]]] = {}

    @property
    def config(self) -> Config:
        return self.settings.config

    def completer(self, session: CompletionBackend) -> Completer:
        """The completion path with ``session``, these settings and the context source."""
        return Completer(session, self._context, self._log)

    # --- requests ------------------------------------------------------------------------
    async def complete(self, req: CompletionRequest,
                       on_text: Callable[[str], None] | None = None) -> Suggestion:
        """A suggestion for ``req``; ``on_text`` receives the suggestion as it grows."""
        t0 = time.monotonic()
        self.counters.requests += 1
        try:
            result = await self._complete(req, on_text)
        except asyncio.CancelledError:
            self.counters.cancelled_requests += 1
            self._log("debug", f"{req.uri}: request cancelled")
            raise
        result.latency_s = time.monotonic() - t0
        if result.text:
            self.counters.served += 1
            self.last_latency_s = result.latency_s
            self._last_served[req.uri] = (req, result.candidates or [result.text])
        else:
            self.counters.empty += 1
            self.last_reason = result.reason
        self._log("debug", f"{req.uri}@{req.offset}: {result.source} {result.reason} "
                           f"{len(result.text)} chars in {result.latency_s * 1000:.0f} ms")
        return result

    async def _complete(self, req: CompletionRequest,
                        on_text: Callable[[str], None] | None) -> Suggestion:
        cc = self.config.completion
        why = self.refused(req)
        if why is not None:  # off, or a secret document: no cache, no model, local or remote
            return Suggestion("", reason=why)
        prefix, suffix = req.text[:req.offset], req.text[req.offset:]
        seq = self._seq[req.uri] = self._seq.get(req.uri, 0) + 1
        self.pace.note(req.uri)
        ctx = self._suggestion_context(req)

        hit = self.cache.lookup(req.uri, prefix, suffix) if cc.cache else None
        if hit is not None:
            entry, typed = hit
            if entry.done:
                if not typed and isinstance(entry.job, Job) and entry.job.ranking:
                    await entry.job.ranked.wait()
                texts = self._answers(entry.remainders(typed), ctx)
                if texts:
                    self.counters.typing_through += bool(typed)
                    self.counters.cache_hits += not typed
                    return Suggestion(texts[0], "typing_through" if typed else "cache",
                                      "cached", ctx.single_line, candidates=texts)
            elif isinstance(entry.job, Job) and len(entry.text) >= len(typed):
                # Adopt a running generation only once its text covers what was typed since it
                # began. A job that has not caught up (still evaluating its prompt, say) is a
                # gamble that the model will type the same characters: losing it costs a whole
                # second generation, and with a slow engine every keystroke would wait on the
                # same stale job. A new job from here reuses the KV cache up to the old cursor.
                self.counters.in_flight_adopted += 1
                self.counters.typing_through += bool(typed)
                # Asked again where it began (nothing typed): an editor wants the candidates.
                result = await self._wait(entry.job, typed, ctx, on_text, "in_flight",
                                          candidates=not typed)
                if result.text or result.reason not in (DIVERGED, CANCELLED):
                    return result
                # The generation went another way than the user typed (or was stopped):
                # ask the model anew below instead of answering nothing.

        session = self._session()
        if session is None:
            return Suggestion("", reason=self._unavailable())
        await asyncio.sleep(self.pace.debounce(req.uri, self.config.completion))
        if self._seq.get(req.uri) != seq:
            self.counters.superseded += 1
            return Suggestion("", reason="superseded by a newer request")
        self._supersede(req.uri)
        job = self._start(session, req, ctx, speculative=False)
        return await self._wait(job, "", ctx, on_text, "model")

    def refused(self, req: CompletionRequest) -> str | None:
        """Why ``req`` gets no suggestion at all (and no prefill), or None."""
        if not self.config.completion.enabled:
            return "completions are disabled"
        if not self.config.language_enabled(req.language):
            return f"completions are off for language '{req.language}'"
        if not 0 <= req.offset <= len(req.text):
            return "cursor outside the document"
        return refusal(req.file_path or req.path, req.text, self.config)

    def _suggestion_context(self, req: CompletionRequest) -> SuggestionContext:
        """What the stop rules see for ``req`` (single- or multi-line by completion.mode)."""
        return suggestion_context(req.cursor, self.config)

    def _answer(self, remainder: str, ctx: SuggestionContext) -> str:
        """The part of a (cached) suggestion a request shows."""
        text = first_line(remainder) if ctx.single_line else remainder
        text, _ = postprocess(text, ctx)
        return text

    def _answers(self, remainders: list[str], ctx: SuggestionContext) -> list[str]:
        """The distinct non-empty answers of several suggestions, in order."""
        texts = (self._answer(rem, ctx) for rem in remainders)
        return list(dict.fromkeys(t for t in texts if t))

    async def _wait(self, job: Job, typed: str, ctx: SuggestionContext,
                    on_text: Callable[[str], None] | None, source: str,
                    candidates: bool = False) -> Suggestion:
        """Wait on ``job`` until it can answer a request that typed ``typed`` since it began
        (``candidates``: until its alternatives are ranked too)."""
        job.waiters += 1
        if job.orphan_timer is not None:
            job.orphan_timer.cancel()
            job.orphan_timer = None
        sent = ""
        try:
            async with job.changed:
                while True:
                    entry = job.entry
                    rem = entry.remainder(typed)
                    if rem is None or (job.cancelled and not entry.done):
                        self.counters.stale_dropped += rem is None
                        return Suggestion("", source, DIVERGED if rem is None else CANCELLED,
                                          ctx.single_line)
                    if job.error:
                        return Suggestion("", source, f"engine error: {job.error}", ctx.single_line)
                    line_done = ctx.single_line and "\n" in rem.lstrip("\n")
                    # Trailing whitespace is held back: a stop rule may cut the text at the start
                    # of the next line, and streamed text should only grow.
                    view = (first_line(rem) if ctx.single_line else rem).rstrip()
                    if on_text is not None and view != sent and not entry.done:
                        sent = view
                        on_text(view)
                    coming = self.config.completion.candidates > 1 and (
                        job.ranking or not entry.done) and not job.cancelled
                    if (entry.done or line_done) and not (candidates and coming):
                        text = self._answer(rem, ctx)
                        texts = self._answers(entry.remainders(typed), ctx) \
                            if entry.candidates else []
                        reason = job.stop if entry.done else "line complete"
                        return Suggestion(texts[0] if texts else text, source, reason if text
                                          else f"nothing left after post-processing ({job.stop})",
                                          ctx.single_line, candidates=texts,
                                          more_candidates=coming)
                    await job.changed.wait()
        finally:
            job.waiters -= 1
            if job.waiters == 0 and not job.entry.done and not job.cancelled:
                # Keep it briefly: the next keystroke may type through it.
                loop = asyncio.get_running_loop()
                job.orphan_timer = loop.call_later(ORPHAN_GRACE_S, self._orphan_expired, job)

    def _orphan_expired(self, job: Job) -> None:
        if job.waiters == 0 and not job.entry.done and not job.speculative:
            self._cancel_job(job, "no request is waiting for it")

    # --- jobs ------------------------------------------------------------------------------
    def _start(self, session: CompletionBackend, req: CompletionRequest, ctx: SuggestionContext,
               *, speculative: bool) -> Job:
        prefix, suffix = req.text[:req.offset], req.text[req.offset:]
        entry = make_entry(req.uri, prefix, suffix)
        # Single-line requests at the end of a line answer with the first line, but the job goes
        # on with the next lines into the cache: accepting the line then shows them at once.
        hot_streak = ctx.single_line and not suffix.split("\n", 1)[0].strip()
        job_ctx = replace(ctx, single_line=ctx.single_line and not hot_streak)
        job = Job(entry=entry, ctx=job_ctx, suffix_len=len(suffix),
                  answer_first_line=ctx.single_line, speculative=speculative)
        entry.job = job
        self.cache.add(entry)
        self._jobs.setdefault(req.uri, []).append(job)
        self.counters.model_calls += 1
        self.counters.speculative += speculative
        job.task = asyncio.create_task(self._run(self.completer(session), job, req))
        return job

    async def _run(self, completer: Completer, job: Job, req: CompletionRequest) -> None:
        entry = job.entry
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TokenEvent | None] = asyncio.Queue()
        try:
            def start() -> Generation:
                gen = completer.start(
                    req.cursor, job.ctx,
                    listener=lambda ev: loop.call_soon_threadsafe(queue.put_nowait, ev))
                # Published before checking the flag: Job.cancel() sets the flag before it
                # looks at the generation, so one of the two always cancels it.
                job.gen = gen
                if job.cancelled:
                    gen.cancel()
                return gen

            if job.cancelled:
                raise asyncio.CancelledError
            gen = await asyncio.to_thread(start)
            while (ev := await queue.get()) is not None:
                cut = gen.feed(ev.text)
                async with job.changed:
                    entry.text = gen.raw
                    job.changed.notify_all()
                if cut:
                    break
            result = await asyncio.to_thread(gen.finish)  # raises EngineError on failure
            self.counters.tokens_evaluated += result.stats.n_evaluated
            self.counters.tokens_generated += result.stats.n_generated
            if job.cancelled:
                raise asyncio.CancelledError
            job.stop = result.stop
            # Served now (the user waits for this one); the alternatives come after it.
            rank = job.ranking = self.config.completion.candidates > 1
            async with job.changed:
                entry.text, entry.done = result.text, True
                job.changed.notify_all()
            if not entry.text:
                self.cache.remove(entry)
            if rank:
                await self._rank(completer, job, gen, result, req)
        except asyncio.CancelledError:
            job.cancelled = True
            self.cache.remove(entry)
            async with job.changed:
                job.changed.notify_all()
        except Exception as exc:  # engine failures reach the waiting requests as a reason
            job.error = str(exc)
            self._log("error", f"{req.uri}: generation failed: {exc}")
            self.cache.remove(entry)
            async with job.changed:
                job.changed.notify_all()
        finally:
            if job.ranking:  # stopped before its alternatives were ranked: nobody waits on them
                job.ranking = False
                job.ranked.set()
            entry.job = None
            jobs = self._jobs.get(req.uri, [])
            if job in jobs:
                jobs.remove(job)

    async def _rank(self, completer: Completer, job: Job, gen: Generation, result: Completion,
                    req: CompletionRequest) -> None:
        """The alternatives to a served suggestion, ranked into its cache entry: the served text
        stays first (the user may be looking at it), the others follow best first."""
        entry = job.entry
        job.ranking = True
        try:
            ranked = await asyncio.to_thread(completer.rank, gen, result, req.cursor,
                                             single_line=job.answer_first_line)
            self.counters.candidates += len(ranked)
            texts = [c.text for c in ranked]
            if not job.cancelled and len(texts) > 1:
                shown = first_line(entry.text) if job.answer_first_line else entry.text
                if entry.text:
                    texts = [entry.text] + [t for t in texts if t != shown]
                entry.text, entry.candidates = texts[0], texts
                self.cache.add(entry)  # back in when the served text was empty
        finally:
            job.ranking = False
            job.ranked.set()
            async with job.changed:
                job.changed.notify_all()

    def _cancel_job(self, job: Job, why: str) -> None:
        if job.ranking and not job.cancelled:
            job.cancel()  # served already: only its alternatives stop (the entry stays)
            return
        if job.cancelled or job.entry.done:
            return
        self.counters.cancelled_jobs += 1
        self._log("debug", f"{job.entry.uri}: generation cancelled: {why}")
        job.cancel()
        self.cache.remove(job.entry)
        if job.task is not None:
            asyncio.get_running_loop().create_task(self._wake(job))

    @staticmethod
    async def _wake(job: Job) -> None:
        async with job.changed:
            job.changed.notify_all()

    def _supersede(self, uri: str) -> None:
        """A request for ``uri`` needs the engine, which is serial: stop older work for this
        document, and background work (hot streaks, speculation, orphans) for any document."""
        for jobs in self._jobs.values():
            for job in list(jobs):
                if job.entry.uri == uri or job.waiters == 0:
                    self._cancel_job(job, "superseded by a newer request")

    # --- document events -----------------------------------------------------------------
    def document_changed(self, uri: str, text: str) -> None:
        """The document now reads ``text``: cancel the jobs this edit contradicts (typing that
        matches a suggestion keeps it), and notice an accepted suggestion."""
        for job in list(self._jobs.get(uri, [])):
            e = job.entry
            typed_len = len(text) - e.prefix_len - job.suffix_len
            consistent = False
            if typed_len >= 0:
                typed = text[e.prefix_len:e.prefix_len + typed_len]
                consistent = (text[e.prefix_len - len(e.prefix_key):e.prefix_len] == e.prefix_key
                              and text[e.prefix_len + typed_len:][:len(e.suffix_key)] == e.suffix_key
                              and e.remainder(typed) is not None)
            if not consistent:
                self._cancel_job(job, "the document changed")
        served = self._last_served.pop(uri, None)
        if served is not None:
            was, suggestions = served
            for suggestion in suggestions:  # any of them may have been accepted
                if text == was.text[:was.offset] + suggestion + was.text[was.offset:]:
                    self.accepted(replace(was, text=text, offset=was.offset + len(suggestion)))
                    break

    def accepted(self, req: CompletionRequest) -> None:
        """A suggestion was accepted and the cursor is at ``req.offset``: prepare the next one."""
        uri, text, offset = req.uri, req.text, req.offset
        session = self._session()
        for job in [j for j in self._jobs.get(uri, []) if j.ranking]:
            self._cancel_job(job, "a suggestion was accepted")  # its alternatives are moot now
        if (not self.config.completion.speculative or session is None
                or any(not j.ranking for j in self._jobs.get(uri, []))
                or not 0 <= offset <= len(text)
                or refusal(req.file_path or req.path, text, self.config)):
            return
        prefix, suffix = text[:offset], text[offset:]
        if self.cache.lookup(uri, prefix, suffix) is not None:
            return
        ctx = self._suggestion_context(req)
        self._log("debug", f"{uri}@{offset}: speculative generation after an accept")
        self._start(session, req, ctx, speculative=True)

    def document_closed(self, uri: str) -> None:
        for job in list(self._jobs.get(uri, [])):
            self._cancel_job(job, "document closed")
        self.cache.clear(uri)
        self.pace.forget(uri)
        for table in (self._seq, self._last_served):
            table.pop(uri, None)

    def reset(self) -> None:
        """Forget everything (the model or the prompt settings changed)."""
        for jobs in self._jobs.values():
            for job in list(jobs):
                self._cancel_job(job, "settings changed")
        self.cache.clear()

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        c = self.counters
        looked_up = c.cache_hits + c.typing_through + c.model_calls - c.speculative
        return {
            "counters": dict(vars(c)),
            "cache_entries": len(self.cache),
            "cache_hit_rate": round((c.cache_hits + c.typing_through) / looked_up, 3)
            if looked_up else None,
            "last_latency_ms": round(self.last_latency_s * 1000, 1)
            if self.last_latency_s is not None else None,
            "last_empty_reason": self.last_reason,
        }
