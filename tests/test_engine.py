"""The llama.cpp engine with the real embedded model: determinism, cancellation, KV reuse."""

from __future__ import annotations

import threading
import time

import pytest

from lsp_server.completion.session import ModelSession
from lsp_server.engine import GenerationRequest, StopReason
from lsp_server.engine.llama_engine import LlamaEngine
from lsp_server.engine.prompt_states import common_prefix_len
from lsp_server.errors import ModelError

import numpy as np

pytestmark = pytest.mark.model

PREFIX = "def fibonacci(n):\n    if n < 2:\n        return n\n    return "


def _prompt(session: ModelSession, text: str = PREFIX) -> list[int]:
    return session.build_prompt(text, "").tokens


def test_common_prefix_len() -> None:
    a = np.array([1, 2, 3, 4], dtype=np.intc)
    assert common_prefix_len(a, np.array([1, 2, 9], dtype=np.intc)) == 2
    assert common_prefix_len(a, a) == 4
    assert common_prefix_len(a[:0], a) == 0


def test_greedy_is_deterministic(session: ModelSession) -> None:
    req = GenerationRequest(tokens=_prompt(session), max_tokens=8)
    first = session.engine.submit(req)
    text1 = first.text()
    # A different request in between changes the KV cache; the answer must not change.
    session.engine.submit(GenerationRequest(tokens=_prompt(session, "import os\n"),
                                            max_tokens=4)).text()
    second = session.engine.submit(req)
    assert second.text() == text1
    assert first.stats.n_generated == 8 and first.stats.stop_reason is StopReason.MAX_TOKENS
    assert "fibonacci" in text1 or "n" in text1


def test_cancel_stops_within_one_token(session: ModelSession) -> None:
    stream = session.engine.submit(GenerationRequest(tokens=_prompt(session), max_tokens=200))
    seen = 0
    for _ in stream:
        seen += 1
        if seen == 3:
            stream.cancel()
    stats = stream.wait(10)
    assert stats.stop_reason is StopReason.CANCELLED
    assert 3 <= stats.n_generated <= 4
    assert seen == stats.n_generated


def test_cancel_from_another_thread_during_prompt_eval(session: ModelSession) -> None:
    long = PREFIX + "".join(f"x{i} = {i}\n" for i in range(300))
    stream = session.engine.submit(GenerationRequest(tokens=_prompt(session, long),
                                                     max_tokens=50))
    threading.Timer(0.0, stream.cancel).start()
    stats = stream.wait(30)
    assert stats.stop_reason is StopReason.CANCELLED
    assert stats.n_generated <= 1


def test_kv_reuse_evaluates_only_new_tokens(session: ModelSession) -> None:
    base = _prompt(session, "class Point:\n    def __init__(self, x, y):\n")
    # Reset the cache with something unrelated first.
    session.engine.submit(GenerationRequest(tokens=[base[0], 1234, 5678], max_tokens=1)).text()
    before = session.engine.counters.evaluated_tokens
    s1 = session.engine.submit(GenerationRequest(tokens=base, max_tokens=1))
    s1.text()
    assert s1.stats.n_evaluated == len(base) - 1  # BOS was shared with the previous prompt
    extra = session.tokenizer.tokenize("        self.x = x\n")
    s2 = session.engine.submit(GenerationRequest(tokens=base + extra, max_tokens=1))
    s2.text()
    assert s2.stats.n_reused == len(base)
    assert s2.stats.n_evaluated == len(extra)
    assert session.engine.counters.evaluated_tokens - before == len(base) - 1 + len(extra)


def test_generated_tokens_are_reused_by_a_continuation(session: ModelSession) -> None:
    base = _prompt(session, "numbers = [1, 2, 3]\ntotal = ")
    s1 = session.engine.submit(GenerationRequest(tokens=base, max_tokens=5))
    generated = [ev.token_id for ev in s1]
    # The user accepts the suggestion: the next prompt is the old one plus the generated text.
    s2 = session.engine.submit(GenerationRequest(tokens=base + generated + [generated[-1]],
                                                 max_tokens=1))
    s2.text()
    # Every generated token but the last was evaluated by the first request.
    assert s2.stats.n_reused == len(base) + len(generated) - 1
    assert s2.stats.n_evaluated == 2


def test_identical_prompt_evaluates_one_token(session: ModelSession) -> None:
    base = _prompt(session, "x = 1\n")
    session.engine.submit(GenerationRequest(tokens=base, max_tokens=1)).text()
    s = session.engine.submit(GenerationRequest(tokens=base, max_tokens=1))
    s.text()
    assert s.stats.n_evaluated == 1 and s.stats.n_reused == len(base) - 1


def test_stop_token_ends_without_emitting_it(session: ModelSession) -> None:
    req = GenerationRequest(tokens=_prompt(session), max_tokens=8)
    tokens = [ev.token_id for ev in session.engine.submit(req)]
    stream = session.engine.submit(GenerationRequest(tokens=req.tokens, max_tokens=8,
                                                     stop_ids=frozenset({tokens[2]})))
    got = [ev.token_id for ev in stream]
    assert got == tokens[:2]
    assert stream.stats.stop_reason is StopReason.STOP_TOKEN


def test_time_budget(session: ModelSession) -> None:
    stream = session.engine.submit(GenerationRequest(tokens=_prompt(session), max_tokens=500,
                                                     time_budget_s=0.15))
    stream.text()
    assert stream.stats.stop_reason is StopReason.TIME_BUDGET
    assert stream.stats.t_total < 1.0


def test_prompt_larger_than_context_is_an_error_and_engine_survives(session: ModelSession) -> None:
    stream = session.engine.submit(GenerationRequest(tokens=[2] * (session.engine.n_ctx + 5)))
    with pytest.raises(Exception, match="does not fit"):
        stream.text()
    ok = session.engine.submit(GenerationRequest(tokens=_prompt(session), max_tokens=2))
    assert len(list(ok)) == 2


def test_load_failure_is_reported(tmp_path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    engine = LlamaEngine(bad)
    with pytest.raises(ModelError, match="cannot load model"):
        engine.wait_ready(60)
    stream = engine.submit(GenerationRequest(tokens=[1, 2], max_tokens=1))
    with pytest.raises(Exception, match="cannot load model"):
        stream.text()
    engine.close()


def test_requests_are_served_in_order_from_many_threads(session: ModelSession) -> None:
    prompt = _prompt(session)
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        text = session.engine.submit(GenerationRequest(tokens=prompt, max_tokens=3)).text()
        with lock:
            results.append(text)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 4 and len(set(results)) == 1
    assert time.monotonic() - t0 < 60


def test_close_cancels_queued_work_and_stops_the_running_request(session: ModelSession,
                                                                 embedded_model) -> None:  # noqa: ANN001
    """Closing (the server's shutdown) does not wait for what is still queued: the request in
    progress stops at its next step, queued ones end cancelled, and later ones are refused."""
    from lsp_server.config import EngineConfig

    engine = LlamaEngine(embedded_model, EngineConfig(context_size=1024, threads=2))
    engine.wait_ready(120)
    tokens = _prompt(session)
    running = engine.submit(GenerationRequest(tokens=tokens, max_tokens=400))
    queued = [engine.submit(GenerationRequest(tokens=tokens + [i + 100], max_tokens=400))
              for i in range(3)]
    next(iter(running))  # it is generating
    t = time.monotonic()
    engine.close()
    took = time.monotonic() - t
    assert running.wait(1).stop_reason is StopReason.CANCELLED
    assert running.stats.n_generated < 400
    assert all(q.wait(1).stop_reason is StopReason.CANCELLED for q in queued)
    assert not any(q.events for q in queued)
    assert took < 5, f"close took {took:.1f} s"
    late = engine.submit(GenerationRequest(tokens=tokens, max_tokens=1))
    assert late.wait(1).stop_reason is StopReason.ERROR and "closed" in (late.stats.error or "")
