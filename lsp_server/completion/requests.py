"""What a completion request asks and what it gets: plain data shared by the pipeline
(:mod:`.pipeline`), the language server's replies and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field

from .completer import Cursor


@dataclass(frozen=True)
class CompletionRequest:
    """A cursor in a document snapshot."""

    uri: str
    text: str
    offset: int
    """Cursor position as an index into ``text`` (code points)."""
    language: str = ""
    path: str = ""
    """Workspace-relative path shown to the model."""
    file_path: str = ""
    """Absolute path on disk ("" for documents that are not files), for repository context."""

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.text[:self.offset], self.text[self.offset:], self.path,
                      self.file_path, self.language)


@dataclass
class Suggestion:
    """What a request produced ("" with a reason when nothing)."""

    text: str
    source: str = "none"
    """'model', 'in_flight', 'cache', 'typing_through' or 'none'."""
    reason: str = ""
    """Why it ended, or why there is nothing (shown by codefill/status)."""
    single_line: bool = False
    latency_s: float = 0.0
    candidates: list[str] = field(default_factory=list)
    """Every suggestion for the cursor in the order to show them (``text`` first) when there
    are several, else empty."""
    more_candidates: bool = False
    """Alternatives to ``text`` are being generated: a request at the same place with nothing
    typed answers once they are ranked."""


@dataclass
class Counters:
    requests: int = 0
    served: int = 0
    empty: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    typing_through: int = 0
    in_flight_adopted: int = 0
    superseded: int = 0
    cancelled_requests: int = 0
    cancelled_jobs: int = 0
    stale_dropped: int = 0
    speculative: int = 0
    tokens_evaluated: int = 0
    tokens_generated: int = 0
    candidates: int = 0
    """Ranked candidates served by model calls (several per call when completion.candidates
    is above 1)."""


def first_line(text: str) -> str:
    """The suggestion up to the end of its first non-empty line (a leading newline is kept:
    after an accepted line the next one starts with it)."""
    lead = len(text) - len(text.lstrip("\n"))
    nl = text.find("\n", lead)
    return text if nl < 0 else text[:nl]
