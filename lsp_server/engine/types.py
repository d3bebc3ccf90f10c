"""Engine-neutral request, stream and statistics types (no llama.cpp import)."""

from __future__ import annotations

import enum
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator


Cut = Callable[[str], tuple[int, str] | None]
"""Where the stop rules end a text: (index, the rule's name), or None while none does."""


class StopReason(str, enum.Enum):
    """Why a generation ended."""

    STOP_TOKEN = "stop_token"
    MAX_TOKENS = "max_tokens"
    TIME_BUDGET = "time_budget"
    CANCELLED = "cancelled"
    CONTEXT_FULL = "context_full"
    ERROR = "error"
    PREFILLED = "prefilled"
    """A background request evaluated its whole prompt (it generates nothing)."""
    PREEMPTED = "preempted"
    """A background request stopped between batches because another request was waiting; what
    it evaluated stays in the KV cache."""


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: prompt tokens in, a token stream out."""

    tokens: list[int]
    """The whole prompt; the engine reuses the longest prefix its KV cache already holds."""
    max_tokens: int = 64
    """Generated tokens at most."""
    stop_ids: frozenset[int] = frozenset()
    """Tokens that end the generation; they are not emitted."""
    time_budget_s: float | None = None
    """Wall-clock limit counted from when the engine starts the request (not the wait in its
    queue), prompt evaluation included."""
    temperature: float = 0.0
    """0 is greedy (deterministic); above 0 samples from the softmax at that temperature."""
    seed: int = 0
    """Sampling seed when temperature > 0."""
    background: bool = False
    """A prefill: evaluate the prompt into the KV cache and generate nothing, giving way
    between batches to any request that is waiting (:attr:`StopReason.PREEMPTED`)."""
    logprobs: bool = False
    """Give each emitted token its log-probability (:attr:`TokenEvent.logprob`)."""
    lead: str = ""
    """Token healing (:mod:`.healing`): the text of a token taken off the prompt's end; the
    first generated token must start with it, and the emitted text leaves it out."""


@dataclass(frozen=True)
class TokenEvent:
    """One generated token and the text it completes (empty inside a multi-byte character)."""

    token_id: int
    text: str
    logprob: float = 0.0
    """log p(token) given everything before it, when the request asked for it."""


@dataclass
class GenerationStats:
    """What one request cost; the KV-reuse figures are exact token counts."""

    n_prompt: int = 0
    n_reused: int = 0
    """Prompt tokens whose KV entries were kept from the previous request."""
    n_evaluated: int = 0
    """Prompt tokens evaluated by this request (n_prompt − n_reused)."""
    n_restored: int = 0
    """Of n_reused, the tokens that came from a kept prompt state (another file's prompt
    the engine had moved away from), not from the live cache."""
    n_generated: int = 0
    t_queued: float = 0.0
    """Seconds between submission and the worker picking the request up."""
    t_prompt_eval: float = 0.0
    t_first_token: float | None = None
    """Seconds from submission to the first emitted token."""
    t_total: float = 0.0
    stop_reason: StopReason | None = None
    error: str | None = None


@dataclass
class EngineCounters:
    """Totals since the engine started."""

    requests: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    cancelled: int = 0
    prefills: int = 0
    """Background requests that evaluated their whole prompt."""
    preempted: int = 0
    prefill_tokens: int = 0
    """Prompt tokens evaluated by background requests (included in evaluated_tokens)."""
    eval_seconds: float = 0.0
    """Time spent evaluating prompts (with evaluated_tokens: the prompt speed)."""
    restored_states: int = 0
    """Requests that started from a kept prompt state instead of the current cache."""
    restored_tokens: int = 0

    def add(self, stats: "GenerationStats", reason: "StopReason") -> None:
        """Count a finished request."""
        self.prompt_tokens += stats.n_prompt
        self.reused_tokens += stats.n_reused
        self.evaluated_tokens += stats.n_evaluated
        self.generated_tokens += stats.n_generated
        self.eval_seconds += stats.t_prompt_eval
        self.cancelled += reason is StopReason.CANCELLED
        self.prefills += reason is StopReason.PREFILLED
        self.preempted += reason is StopReason.PREEMPTED
        if reason in (StopReason.PREFILLED, StopReason.PREEMPTED):
            self.prefill_tokens += stats.n_evaluated

    def prompt_speed(self, default: float) -> float:
        """Measured prompt-evaluation tokens/s (``default`` until enough was measured)."""
        if self.evaluated_tokens < 256 or self.eval_seconds <= 0:
            return default
        return self.evaluated_tokens / self.eval_seconds


class EngineError(RuntimeError):
    """The engine failed (model load or decode); the message is meant for the user."""


_END = object()


@dataclass(eq=False)  # a stream is equal only to itself (and hashable)
class TokenStream:
    """Tokens of one request as the worker produces them; iterate it from any one thread.

    ``cancel()`` may be called from any thread; the worker checks it between tokens (and between
    prompt batches), so at most one more token arrives after it.
    """

    request: object
    """What was asked: a :class:`GenerationRequest` for the local engine, an infill request for
    a remote one."""
    submitted: float = field(default_factory=time.monotonic)
    stats: GenerationStats = field(default_factory=GenerationStats)
    listener: Callable[[TokenEvent | None], None] | None = None
    """Called on the worker thread with each event and None at the end (for asyncio bridges);
    it must be quick and must not raise."""
    result: object = None
    """What a request that answers as a whole produced (the candidates of a
    :class:`~lsp_server.engine.candidates.CandidatesRequest`)."""
    prompt: object = None
    """What reached the model: the assembled :class:`~lsp_server.prompt.assemble.Prompt`
    locally, the request body for a remote engine."""
    events: list[TokenEvent] = field(default_factory=list)
    """The tokens emitted so far (read them from another thread once the stream is done)."""
    cold: bool = False
    """The request was answered from a short prompt while its full prompt was cold."""
    _queue: "queue.SimpleQueue[object]" = field(default_factory=queue.SimpleQueue)
    _cancel_hooks: list[Callable[[], None]] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)

    # --- consumer side -------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()
        for hook in list(self._cancel_hooks):
            try:
                hook()
            except Exception:  # a hook only speeds cancellation up; the flag is what counts
                pass

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when the stream is cancelled (at once if it already is): remote engines
        close their HTTP response so a blocked read returns."""
        self._cancel_hooks.append(hook)
        if self._cancel.is_set():
            hook()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[TokenEvent]:
        while True:
            item = self._queue.get()
            if item is _END:
                self._queue.put(_END)  # later iterations end at once
                if self.stats.stop_reason is StopReason.ERROR:
                    raise EngineError(self.stats.error or "generation failed")
                return
            assert isinstance(item, TokenEvent)
            yield item

    def wait(self, timeout: float | None = None) -> GenerationStats:
        """Block until the generation has ended; returns its statistics."""
        if not self._done.wait(timeout):
            raise TimeoutError("generation still running")
        return self.stats

    def text(self) -> str:
        """Consume the stream and return the whole generated text."""
        return "".join(ev.text for ev in self)

    # --- worker side ---------------------------------------------------------------------
    def _emit(self, event: TokenEvent) -> None:
        self.events.append(event)
        self._queue.put(event)
        if self.listener is not None:
            self.listener(event)

    def _finish(self, reason: StopReason, error: str | None = None) -> None:
        self.stats.stop_reason = reason
        self.stats.error = error
        self.stats.t_total = time.monotonic() - self.submitted
        self._done.set()
        self._queue.put(_END)
        if self.listener is not None:
            self.listener(None)


def cancel_queued(jobs: "queue.Queue[TokenStream | None]") -> None:
    """Cancel and end every stream still waiting in ``jobs`` (an engine closing)."""
    while True:
        try:
            stream = jobs.get_nowait()
        except queue.Empty:
            return
        if stream is not None:
            stream.cancel()
            stream._finish(StopReason.CANCELLED)
