"""The interface between the completion pipeline and whatever generates: the in-process
llama.cpp engine (:class:`~lsp_server.completion.session.ModelSession`) or a remote engine
(:class:`~lsp_server.completion.remote_session.RemoteSession`).

The pipeline, the CLI and the benchmarks only use this interface, so they do not know which
one runs. A backend turns a cursor (prefix, suffix, context files) into a token stream; stop
rules, post-processing, caching and context selection stay in the daemon.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..config import Config
from ..engine.types import EngineCounters, EngineError, GenerationStats, StopReason, TokenEvent, \
    TokenStream
from ..models.resolve import Progress
from ..prompt.assemble import ContextFile
from ..prompt.tokens import Tokenizer
from .rules import SuggestionContext, decide_single_line, first_cut, postprocess

Listener = Callable[[TokenEvent | None], None]


@dataclass(frozen=True)
class InfillRequest:
    """One suggestion to generate, as text."""

    prefix: str
    suffix: str
    path: str = ""
    """Workspace-relative path of the current file (shown to models that take file names)."""
    context: Sequence[ContextFile] = ()
    """Repository-context files in prompt order."""
    max_tokens: int = 64
    time_budget_s: float | None = None
    temperature: float = 0.0
    seed: int = 0


@dataclass
class Completion:
    """A suggestion and what it cost."""

    text: str
    prompt: Any
    """What reached the model: a Prompt (local) or the request body (remote)."""
    stats: GenerationStats
    stop: str
    """Why the suggestion ended: an engine stop reason or the stop rule that cut it."""
    timings: dict[str, float] = field(default_factory=dict)


class CompletionBackend(abc.ABC):
    """What generates suggestions for the pipeline."""

    config: Config
    kind: str = ""
    """'local' or the remote API name."""

    @property
    @abc.abstractmethod
    def n_ctx(self) -> int:
        """Context window in tokens that prompts are budgeted to."""

    @property
    @abc.abstractmethod
    def tokenizer(self) -> Tokenizer:
        """Counts tokens for repository-context budgeting (exact locally, estimated remotely)."""

    @property
    @abc.abstractmethod
    def counters(self) -> EngineCounters:
        """Engine totals since the backend started."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """One line naming the model (and server) for status displays."""

    @abc.abstractmethod
    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the backend can generate; raise a CodefillError/EngineError if it can't."""

    @abc.abstractmethod
    def generate(self, req: InfillRequest, listener: Listener | None = None) -> TokenStream:
        """Start generating for ``req``; the text arrives on the returned stream."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """Facts for ``codefill/status``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop generating and free resources."""

    def complete(self, prefix: str, suffix: str, *, path: str = "",
                 single_line: bool | None = None, max_tokens: int | None = None,
                 context: Sequence[ContextFile] = (), language: str = "",
                 disabled_rules: frozenset[str] = frozenset(), temperature: float = 0.0,
                 seed: int = 0) -> Completion:
        """One suggestion for the cursor between ``prefix`` and ``suffix``, synchronously.

        The same stop rules and post-processors as the language server's pipeline
        (lsp_server/completion/rules); ``single_line`` None decides like the server's 'auto'
        mode. ``disabled_rules`` switches rules off by name (for ablations). ``temperature``
        0 is greedy; above 0 samples with ``seed`` (pass@k benchmarks).
        """
        t0 = time.monotonic()
        self.wait_ready()
        t_ready = time.monotonic()
        if single_line is None:
            single_line = decide_single_line(prefix, suffix, language)
        ctx = SuggestionContext(prefix=prefix[-4096:], suffix=suffix[:4096], language=language,
                                single_line=single_line)
        n = max_tokens or self.config.prompt.max_tokens
        stream = self.generate(InfillRequest(
            prefix=prefix, suffix=suffix, path=path, context=tuple(context), max_tokens=n,
            time_budget_s=self.config.engine.time_budget_ms / 1000, temperature=temperature,
            seed=seed))
        t_prompt = time.monotonic()
        text, stop = "", ""
        for ev in stream:
            text += ev.text
            cut = first_cut(text, ctx, disabled_rules)
            if cut is not None:
                text, stop = text[:cut[0]], cut[1]
                stream.cancel()
                break
        stats = stream.wait()
        if stats.stop_reason is StopReason.ERROR:
            raise EngineError(stats.error or "generation failed")
        if not stop:
            stop = stats.stop_reason.value if stats.stop_reason else "unknown"
        text, changed_by = postprocess(text, ctx, disabled_rules)
        if changed_by:
            stop += f" (post-processed: {', '.join(changed_by)})"
        return Completion(text=text, prompt=stream.prompt, stats=stats, stop=stop, timings={
            "model_load": self.load_seconds,
            "wait_ready": t_ready - t0,
            "prompt_build": t_prompt - t_ready,
            "queued": stats.t_queued,
            "prompt_eval": stats.t_prompt_eval,
            "first_token": stats.t_first_token or 0.0,
            "generation_total": stats.t_total,
            "total": time.monotonic() - t0,
        })

    @property
    def load_seconds(self) -> float:
        return 0.0

    def __enter__(self) -> "CompletionBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(config: Config, *, progress: Progress | None = None,
                 on_health: Callable[[str, str], None] | None = None) -> CompletionBackend:
    """The backend ``config`` asks for: a remote engine when remote.url is set, else the local
    llama.cpp engine (model resolution and loading start here; see ``wait_ready``).
    ``on_health`` hears a remote engine going from answering to failing and back."""
    if config.remote.url.strip():
        from .remote_session import RemoteSession

        return RemoteSession(config, progress=progress, on_health=on_health)
    from .session import ModelSession

    return ModelSession(config, progress=progress)
