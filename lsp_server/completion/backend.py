"""The interface between the completion path and whatever generates: the in-process llama.cpp
engine (:class:`~lsp_server.completion.session.ModelSession`) or a remote engine
(:class:`~lsp_server.completion.remote_session.RemoteSession`); :func:`open_backend` in
:mod:`lsp_server.completion.factory` picks one.

The completion path (:mod:`lsp_server.completion.completer`) only uses this interface, so it
does not know which one runs. A backend owns the prompt budget of its context window (in its own
units) and turns a request (prefix, suffix, context files) into a token stream; stop rules,
post-processing, caching and context selection stay in the daemon.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..config import Config
from ..engine.types import Cut, EngineCounters, GenerationStats, TokenEvent, TokenStream
from ..prompt.assemble import Budget, ContextFile
from ..prompt.tokens import Tokenizer
from ..settings import Settings

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
    budget: Budget | None = None
    """The prompt budget in the backend's units (None: the backend's own for ``max_tokens``)."""
    time_budget_s: float | None = None
    temperature: float = 0.0
    seed: int = 0
    logprobs: bool = False
    """Give each generated token its log-probability (several candidates are ranked by it)."""
    prefill: bool = False
    """Only evaluate the prompt into the engine's cache, in the background (it gives way to any
    other request), generating nothing: the prompt a request at this cursor will need."""


@dataclass
class Completion:
    """A suggestion and what it cost."""

    text: str
    prompt: Any
    """What reached the model: a Prompt (local) or the request body (remote)."""
    stats: GenerationStats
    stop: str
    """Why the suggestion's text ended: an engine stop reason or the stop rule that cut it, and
    the post-processors that changed it in brackets (the best-ranked candidate's when several
    were ranked)."""
    timings: dict[str, float] = field(default_factory=dict)
    candidates: list[Any] = field(default_factory=list)
    """The ranked :class:`~lsp_server.completion.ranking.Candidate` list when several were
    generated (``text`` is the first one's), else empty."""


class CompletionBackend(abc.ABC):
    """What generates suggestions for the pipeline."""

    settings: Settings
    """The settings holder the backend reads its prompt settings from at every request."""
    kind: str = ""
    """'local' or the remote API name."""

    @property
    def config(self) -> Config:
        return self.settings.config

    @property
    @abc.abstractmethod
    def n_ctx(self) -> int:
        """Context window in tokens that prompts are budgeted to."""

    def budget(self, max_tokens: int) -> Budget:
        """The prompt budget of one request that generates up to ``max_tokens``: the context
        window less the allowance, split by the prompt settings (in the backend's units)."""
        p = self.config.prompt
        return Budget.for_window(self.n_ctx, max_tokens + self.candidates_room(max_tokens),
                                 context_share=p.context_share,
                                 suffix_share=p.suffix_share, sticky_share=p.sticky_cut)

    def candidates_room(self, max_tokens: int) -> int:
        """Context-window room the alternatives need beside the prompt (completion.candidates;
        0 for a backend that offers one candidate)."""
        return 0

    def needs_more_cells(self) -> bool:
        """Whether loading again would hold more cache room for the candidates than the loaded
        backend has (the settings ask for more than was set aside at load)."""
        return False

    @abc.abstractmethod
    def context_allowance(self, budget: Budget) -> int:
        """Tokens (counted with :attr:`tokenizer`) that repository context may fill in a
        prompt of ``budget``: exactly what the prompt's layout will let it use."""

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

    def alternatives(self, stream: TokenStream, first_text: str, req: InfillRequest, *,
                     n: int, cut: Cut) -> TokenStream | None:
        """Up to ``n - 1`` alternatives to the suggestion ``stream`` generated (cut to
        ``first_text``) and scores for all ``n``, as a stream whose ``result`` is a list of
        :class:`~lsp_server.engine.candidates.EngineCandidate`; None when this backend offers
        one candidate only."""
        return None

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """Facts for ``codefill/status``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop generating and free resources."""

    @property
    def load_seconds(self) -> float:
        return 0.0

    @property
    def warnings(self) -> list[str]:
        """What the user should know about how the backend runs, once it is ready."""
        return []

    def __enter__(self) -> "CompletionBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

