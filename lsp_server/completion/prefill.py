"""Prefill while idle: the prompt of the next likely request is evaluated before it is asked.

The first request at a place the engine has not seen (a file just opened, a jump far from the
last request) must evaluate its whole prompt — repository context, the text around the cursor —
which takes seconds on a CPU. When the editor says where the user is looking
(``codefill/didFocus``), :class:`Prefiller` builds the prompt a request at that cursor would send,
through the same completion path (:class:`~lsp_server.completion.completer.Completer`), and has
the engine evaluate it in the background: the engine stops it between batches as soon as a real
request is queued (it keeps what it evaluated), and the request then evaluates only what is new.

A focus on the line of the last focus or request is ignored (the user is typing there: requests
keep the cache warm; a focus back in another file's line is not: the engine has moved on), and so
is one a request overtook before it started.
When what repository context selects may have changed (the workspace index became ready, or
files changed on disk), the last place looked at or completed is prefilled again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from ..engine.types import StopReason
from ..settings import Settings
from .backend import CompletionBackend
from .completer import Completer
from .requests import CompletionRequest

#: A burst of focus events (switching through editors, a cursor moving) settles before a prefill.
SETTLE_S = 0.25
#: How often the repository context's version is looked at.
CONTEXT_POLL_S = 1.0


@dataclass
class PrefillCounters:
    focus: int = 0
    """codefill/didFocus notifications (and opened documents) received."""
    scheduled: int = 0
    done: int = 0
    """Prefills that evaluated their whole prompt."""
    preempted: int = 0
    """Prefills a request stopped between batches (what they evaluated stays in the cache)."""
    skipped: int = 0
    """Focus on the line last focused or completed, prefill off, no model, or overtaken."""
    failed: int = 0
    evaluated_tokens: int = 0
    context_changes: int = 0
    """Prefills again because repository context may have changed."""


class Prefiller:
    """Schedules one background prefill at a time, for the latest place the user looks at."""

    def __init__(self, settings: Settings, session: Callable[[], CompletionBackend | None],
                 pipeline: Any, log: Callable[[str, str], None] | None = None,
                 context_version: Callable[[], object] | None = None) -> None:
        """``pipeline``: the :class:`~lsp_server.completion.pipeline.Pipeline` whose completion
        path a prefill takes, and whose request count tells when a request overtook one."""
        self.settings = settings
        self._session = session
        self._pipeline = pipeline
        self._completer: Callable[[CompletionBackend], Completer] = pipeline.completer
        self._requests: Callable[[], int] = lambda: pipeline.counters.requests
        self._log = log or (lambda level, text: None)
        self.counters = PrefillCounters()
        # (CompletionRequest, its line): the last place focused or completed, prefilled again
        # when repository context changes
        self._place: tuple[CompletionRequest, int] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._context_version = context_version
        self._seen_version: object = None
        self._watch: asyncio.Task | None = None

    def noticed(self, req: CompletionRequest, line: int) -> None:
        """A completion request (``req``, on ``line``): a focus there next needs no prefill, and
        it is the place to prefill again when repository context changes (the focus before it,
        e.g. an opened file's first line, is where the user no longer is)."""
        self._place = (req, line)

    def _at(self, uri: str, line: int) -> bool:
        """Whether (``uri``, ``line``) is the last place focused or completed."""
        return self._place is not None and (self._place[0].uri, self._place[1]) == (uri, line)

    def focus(self, req: CompletionRequest, line: int) -> None:
        """The user looks at ``req``'s cursor (on ``line``): prefill its prompt when it settles."""
        self.counters.focus += 1
        if not self.settings.config.completion.prefill or self._at(req.uri, line):
            self.counters.skipped += 1
            return
        self._place = (req, line)
        self._schedule(req)

    def _schedule(self, req: CompletionRequest) -> None:
        if self._pending is not None:
            self._pending.cancel()
        seen = self._requests()
        loop = asyncio.get_running_loop()
        self._pending = loop.call_later(SETTLE_S, lambda: self._start(req, seen))
        if self._context_version is not None and self._watch is None:
            self._watch = loop.create_task(self._watch_context())

    def _start(self, req: CompletionRequest, seen: int) -> None:
        self._pending = None
        self.counters.scheduled += 1
        if self._context_version is not None:
            self._seen_version = self._context_version()
        self._task = asyncio.get_running_loop().create_task(self._run(req, seen))

    async def _watch_context(self) -> None:
        """Prefill the last place looked at or completed again when repository context may
        have changed."""
        assert self._context_version is not None
        while True:
            await asyncio.sleep(CONTEXT_POLL_S)
            version = self._context_version()
            if (version != self._seen_version and self._place is not None
                    and self._pending is None and self.settings.config.completion.prefill):
                self.counters.context_changes += 1
                self._schedule(self._place[0])

    def forget(self, uri: str) -> None:
        """The document was closed: no prefill for it any more."""
        if self._place is not None and self._place[0].uri == uri:
            self._place = None

    async def _run(self, req: CompletionRequest, seen: int) -> None:
        session = self._session()
        if session is None or self._requests() != seen or self._pipeline.refused(req):
            self.counters.skipped += 1
            return
        completer = self._completer(session)
        try:
            gen = await asyncio.to_thread(completer.start, req.cursor, None, prefill=True)
            stats = await asyncio.to_thread(gen.stream.wait)
        except Exception as exc:  # a failed prefill only costs the speed it would have won
            self.counters.failed += 1
            self._log("debug", f"{req.uri}: prefill failed: {exc}")
            return
        self.counters.evaluated_tokens += stats.n_evaluated
        if stats.stop_reason is StopReason.PREEMPTED:
            self.counters.preempted += 1
        elif stats.stop_reason in (StopReason.PREFILLED, StopReason.MAX_TOKENS):
            self.counters.done += 1
        else:
            self.counters.failed += 1
        self._log("debug", f"{req.uri}@{req.offset}: prefill {stats.stop_reason.value} — "
                           f"{stats.n_evaluated} of {stats.n_prompt} prompt tokens evaluated "
                           f"in {stats.t_prompt_eval * 1000:.0f} ms")

    def status(self) -> dict[str, object]:
        return dict(vars(self.counters))
