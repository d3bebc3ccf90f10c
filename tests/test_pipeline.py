"""Pipeline unit tests against a scripted backend (the engine isolated: tokens arrive when the
test releases them). The real model and server are exercised in tests/test_server.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lsp_server.completion.backend import CompletionBackend, InfillRequest, Listener
from lsp_server.completion.pipeline import CompletionRequest, Pipeline
from lsp_server.config import load_config
from lsp_server.engine.types import EngineCounters, StopReason, TokenEvent, TokenStream
from lsp_server.context import ContextSelection
from lsp_server.prompt.assemble import Budget, ContextFile
from lsp_server.settings import Settings


class ScriptedBackend(CompletionBackend):
    """Each generate() returns a stream the test feeds by hand through ``streams``."""

    kind = "local"

    def __init__(self) -> None:
        self.settings = Settings()
        self.requests: list[InfillRequest] = []
        self.streams: list[TokenStream] = []

    n_ctx = 4096  # type: ignore[assignment]
    tokenizer = None  # type: ignore[assignment]
    counters = EngineCounters()  # type: ignore[assignment]
    label = "scripted"  # type: ignore[assignment]

    def wait_ready(self, timeout: float | None = None) -> None:
        pass

    def context_allowance(self, budget: Budget) -> int:
        return budget.context_allowance(0)

    def generate(self, req: InfillRequest, listener: Listener | None = None) -> TokenStream:
        stream = TokenStream(request=req, listener=listener)
        self.requests.append(req)
        self.streams.append(stream)
        return stream

    def status(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def emit(stream: TokenStream, text: str) -> None:
    stream._emit(TokenEvent(0, text))


def finish(stream: TokenStream) -> None:
    stream._finish(StopReason.CANCELLED if stream.cancelled else StopReason.MAX_TOKENS)


def make(backend: ScriptedBackend) -> Pipeline:
    config, errors = load_config({"completion": {"debounce_min_ms": 0, "debounce_max_ms": 0,
                                                  "mode": "multi"}})
    assert not errors
    return Pipeline(config, lambda: backend)


DOC = "total = compute(\n"


def req(typed: str) -> CompletionRequest:
    cut = len("total = compute(")
    return CompletionRequest("file:///a.py", DOC[:cut] + typed + DOC[cut:], cut + len(typed),
                             "python")


async def until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


async def first_request(backend: ScriptedBackend) -> tuple[Pipeline, asyncio.Task]:
    """A pipeline whose first request (at the cursor, nothing typed) has started its job."""
    p = make(backend)
    first = asyncio.create_task(p.complete(req("")))
    await until(lambda: len(backend.streams) == 1)
    return p, first


def test_a_keystroke_ahead_of_a_silent_job_starts_a_new_one() -> None:
    """A job that has produced nothing yet is not adopted by a request that typed more: the
    old job is cancelled and the new cursor gets its own generation."""
    backend = ScriptedBackend()

    async def run() -> None:
        p, first = await first_request(backend)
        second = asyncio.create_task(p.complete(req("a")))
        await until(lambda: len(backend.streams) == 2)
        assert backend.streams[0].cancelled
        assert backend.requests[1].prefix.endswith("compute(a")
        finish(backend.streams[0])
        emit(backend.streams[1], "rgs)")
        finish(backend.streams[1])
        assert (await second).text == "rgs)"
        assert (await first).text == ""
        assert p.counters.in_flight_adopted == 0 and p.counters.model_calls == 2

    asyncio.run(run())


@pytest.mark.parametrize("typed", ["a", "ar"])
def test_a_keystroke_the_job_already_covers_adopts_it(typed: str) -> None:
    backend = ScriptedBackend()

    async def run() -> None:
        p, first = await first_request(backend)
        emit(backend.streams[0], "ar")
        await until(lambda: p._jobs["file:///a.py"][0].entry.text == "ar")
        second = asyncio.create_task(p.complete(req(typed)))
        await asyncio.sleep(0.05)
        assert len(backend.streams) == 1 and not backend.streams[0].cancelled
        emit(backend.streams[0], "gs)")
        finish(backend.streams[0])
        assert (await second).text == "args)"[len(typed):]
        assert (await first).text == "args)"
        assert p.counters.in_flight_adopted == 1 and p.counters.model_calls == 1

    asyncio.run(run())


def test_same_cursor_adopts_a_silent_job() -> None:
    """Nothing typed since the job began (a repeated request, a speculative job): adopt it even
    before its first token."""
    backend = ScriptedBackend()

    async def run() -> None:
        p, first = await first_request(backend)
        second = asyncio.create_task(p.complete(req("")))
        await asyncio.sleep(0.05)
        assert len(backend.streams) == 1
        emit(backend.streams[0], "x)")
        finish(backend.streams[0])
        assert (await first).text == (await second).text == "x)"
        assert p.counters.in_flight_adopted == 1

    asyncio.run(run())



def test_speculation_after_an_accept_keeps_the_request_s_file() -> None:
    """The speculative generation after an accepted suggestion asks with the served request's
    path, file and language: a prompt without them starts differently (FIM templates put the
    path and the repository context first), so it lost the engine's KV cache twice (there and
    back) and its suggestion lacked the repository context."""
    backend = ScriptedBackend()
    seen: list[tuple[str, str, int]] = []

    class Context:
        def select_context(self, path: str, prefix: str, suffix: str, tokenizer: Any,
                           budget_tokens: int) -> ContextSelection:
            seen.append((path, prefix, budget_tokens))
            return ContextSelection([ContextFile("pkg/util.py", "def helper(): ...\n")], [],
                                    budget_tokens, 0)

    async def run() -> None:
        config, _ = load_config({"completion": {"debounce_min_ms": 0, "debounce_max_ms": 0,
                                                "mode": "multi"}})
        p = Pipeline(config, lambda: backend, context=Context())
        served = CompletionRequest("file:///ws/pkg/a.py", DOC, len("total = compute("), "python",
                                   "pkg/a.py", "/ws/pkg/a.py")
        first = asyncio.create_task(p.complete(served))
        await until(lambda: len(backend.streams) == 1)
        emit(backend.streams[0], "args)")
        finish(backend.streams[0])
        assert (await first).text == "args)"
        accepted = DOC.replace("compute(", "compute(args)")
        p.document_changed(served.uri, accepted)  # the editor inserted the suggestion
        await until(lambda: len(backend.streams) == 2)
        spec = backend.requests[1]
        assert p.counters.speculative == 1
        assert spec.prefix == "total = compute(args)" and spec.path == "pkg/a.py"
        assert [f.path for f in spec.context] == ["pkg/util.py"]
        assert seen[1][:2] == ("/ws/pkg/a.py", "total = compute(args)")
        # The context share of the backend's one budget: (4096 - 64 - 1) * 0.35.
        assert seen[1][2] == int((4096 - 64 - 1) * 0.35)
        finish(backend.streams[1])

    asyncio.run(run())
