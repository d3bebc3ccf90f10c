"""Prefill while idle and kept prompt states, with the real embedded model: the engine's
background requests, preemption and state restores (its counters are exact token counts), and
the server's codefill/didFocus."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from bench.common import Harness
from lsp_server.completion.session import ModelSession
from lsp_server.config import Config
from lsp_server.engine import GenerationRequest, StopReason

pytestmark = pytest.mark.model


def source(n_lines: int, name: str = "f") -> str:
    """Python that tokenizes to about 12 tokens a line, different per ``name``."""
    return "".join(f"def {name}_{i}(x):\n    return x * {i} + {len(name)}\n"
                   for i in range(n_lines // 2))


@pytest.fixture(scope="module")
def states_session(embedded_model: Path) -> Iterator[ModelSession]:
    config = Config()
    config.engine.model = str(embedded_model)
    config.engine.context_size = 4096
    config.engine.batch_size = 64  # many batches: room to preempt between them
    config.engine.prompt_states = 2
    with ModelSession(config) as s:
        s.engine.wait_ready()
        yield s


def tokens(session: ModelSession, text: str) -> list[int]:
    return session.build_prompt(text, "").tokens


def test_a_prefill_leaves_only_the_typed_tokens_to_evaluate(states_session: ModelSession
                                                            ) -> None:
    s = states_session
    text = source(80)
    pre = s.engine.submit(GenerationRequest(tokens=tokens(s, text), background=True)).wait(60)
    assert pre.stop_reason is StopReason.PREFILLED
    assert pre.n_generated == 0 and pre.n_evaluated + pre.n_reused == pre.n_prompt
    typed = tokens(s, text + "def g(")
    req = s.engine.submit(GenerationRequest(tokens=typed, max_tokens=4)).wait(60)
    assert req.n_reused == pre.n_prompt  # the whole prefilled prompt
    assert req.n_evaluated == len(typed) - pre.n_prompt <= 4
    assert req.n_generated >= 1


def test_a_request_preempts_a_prefill_which_keeps_what_it_evaluated(
        states_session: ModelSession) -> None:
    s = states_session
    eng = s.engine
    before = eng.counters.preempted
    long = tokens(s, source(240, "pre"))  # ~1,400 tokens: 20+ batches of 64
    assert len(long) > 1000
    prefill = eng.submit(GenerationRequest(tokens=long, background=True))
    time.sleep(0.15)  # a few batches in
    t0 = time.monotonic()
    answer = eng.submit(GenerationRequest(tokens=long[:300], max_tokens=3))
    stats = answer.wait(60)
    waited = time.monotonic() - t0
    pre = prefill.wait(10)
    assert pre.stop_reason is StopReason.PREEMPTED and eng.counters.preempted == before + 1
    assert 0 < pre.n_evaluated < len(long)
    # The request waited at most one batch for the prefill, and reused what it had evaluated.
    assert stats.n_generated >= 1 and stats.t_queued < 1.0, (stats, waited)
    assert stats.n_reused == min(pre.n_reused + pre.n_evaluated, 299)


def test_switching_between_three_files_restores_their_kept_states(
        states_session: ModelSession) -> None:
    s = states_session
    eng = s.engine
    files = {name: tokens(s, source(60, name)) for name in ("alpha", "beta", "gamma")}
    for t in files.values():
        eng.submit(GenerationRequest(tokens=t, background=True)).wait(60)
    restored = eng.counters.restored_states
    # Back to alpha: its kept state comes back instead of being evaluated again.
    alpha = files["alpha"]
    st = eng.submit(GenerationRequest(tokens=alpha + alpha[-3:], max_tokens=2)).wait(60)
    assert eng.counters.restored_states == restored + 1
    assert st.n_restored == len(alpha) and st.n_evaluated == 3
    # Two states are kept (engine.prompt_states = 2): beta and gamma are there, alpha is live.
    assert len(eng.states) == 2 and eng.states.nbytes > 0
    st = eng.submit(GenerationRequest(tokens=files["beta"], max_tokens=2)).wait(60)
    assert st.n_restored == len(files["beta"]) and st.n_evaluated == 1
    assert s.status()["prompt_states"]["kept"] == 2


def test_without_kept_states_switching_back_evaluates_again(embedded_model: Path) -> None:
    config = Config()
    config.engine.model = str(embedded_model)
    config.engine.prompt_states = 0
    with ModelSession(config) as s:
        a, b = tokens(s, source(60, "alpha")), tokens(s, source(60, "beta"))
        for t in (a, b):
            s.engine.submit(GenerationRequest(tokens=t, background=True)).wait(60)
        st = s.engine.submit(GenerationRequest(tokens=a, max_tokens=2)).wait(60)
        assert st.n_restored == 0 and st.n_evaluated > len(a) // 2


def test_the_server_prefills_where_the_user_looks(tmp_path: Path) -> None:
    text = source(400)
    path = tmp_path / "big.py"
    path.write_text(text)
    h = Harness(tmp_path)
    h.start()
    try:
        uri = h.open(path, text)
        line = 300
        focus = {"textDocument": {"uri": uri}, "position": {"line": line, "character": 4}}
        assert h.client is not None
        h.call(h.client.protocol.notify, "codefill/didFocus", focus)
        deadline = time.monotonic() + 120
        while h.status()["prefill"]["done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        st = h.status()
        # The open (line 0) and the focus came within the settling time: one prefill, the focus.
        assert st["prefill"]["focus"] == 2 and st["prefill"]["done"] == 1, (st["prefill"], h.logs)
        assert st["prefill"]["scheduled"] == 1
        before = st["model"]["engine"]
        # (The answer may be empty: after "def " the model writes the rest of the line, which
        # is already there after the cursor. The engine's counters show the request ran.)
        h.inline(uri, line, 4)
        after = h.status()["model"]["engine"]
        evaluated = after["evaluated_tokens"] - before["evaluated_tokens"]
        prompt = after["prompt_tokens"] - before["prompt_tokens"]
        assert prompt > 1000 and evaluated <= 2, (prompt, evaluated)
        # A focus on the line just completed is ignored.
        h.call(h.client.protocol.notify, "codefill/didFocus", focus)
        time.sleep(0.6)
        st = h.status()["prefill"]
        assert st["focus"] == 3 and st["skipped"] == 1 and st["scheduled"] == 1, st
    finally:
        h.stop()


def test_prefill_off_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    options = {"completion": {"prefill": False}}
    h = Harness(tmp_path, init_options=options, settings=options)
    h.start()
    try:
        uri = h.open(path, source(20))
        assert h.client is not None
        h.call(h.client.protocol.notify, "codefill/didFocus",
               {"textDocument": {"uri": uri}, "position": {"line": 5, "character": 0}})
        time.sleep(0.6)
        st = h.status()["prefill"]
        assert st["focus"] == 2 and st["scheduled"] == 0 and st["skipped"] == 2, st
    finally:
        h.stop()


def test_a_malformed_focus_is_ignored(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.start()
    try:
        assert h.client is not None
        for bad in ({}, {"textDocument": {"uri": "file:///nope.py"}}, {"position": 3},
                    {"textDocument": {"uri": "file:///x"}, "position": {"line": -1,
                                                                         "character": 0}}):
            h.call(h.client.protocol.notify, "codefill/didFocus", bad)
        time.sleep(0.3)
        assert h.status()["model"]["state"] == "ready"
    finally:
        h.stop()




def test_a_cold_request_answers_in_time_from_a_short_prompt(tmp_path: Path) -> None:
    """A 1.5 s budget and ~3,000 new prompt tokens (about 5 s here): the answer comes from a
    short prompt in time, and the full prompt fills in for the next keystroke."""
    text = source(600) + "def area(w, h):\n    return w * "
    path = tmp_path / "big.py"
    path.write_text(text)
    options = {"engine": {"time_budget_ms": 1500, "cold_share": 0.5},
               "completion": {"prefill": False}}
    h = Harness(tmp_path, init_options=options, settings=options)
    h.start()
    try:
        uri = h.open(path, text)
        line = text.count("\n")
        t0 = time.monotonic()
        first = h.inline(uri, line, len(text.splitlines()[-1]))
        took = time.monotonic() - t0
        st = h.status()
        assert st["model"]["short_prompts"] == 1, st["model"]
        assert first, st["completion"]["last_empty_reason"]
        assert took < 3.0, took  # the budget plus the request's own overhead
        # The full prompt then fills in the background; the next keystroke is warm.
        deadline = time.monotonic() + 120
        while h.status()["model"]["engine"]["prefills"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = h.status()["model"]["engine"]
        h.change(uri, (line, len(text.splitlines()[-1])), (line, len(text.splitlines()[-1])), "h")
        h.inline(uri, line, len(text.splitlines()[-1]) + 1)  # "w * h" may well end the line
        after = h.status()["model"]
        assert after["short_prompts"] == 1
        assert after["engine"]["evaluated_tokens"] - before["evaluated_tokens"] <= 4
        assert after["engine"]["prompt_tokens"] - before["prompt_tokens"] > 2000
    finally:
        h.stop()


def test_a_change_to_repository_context_prefills_the_place_again(tmp_path: Path) -> None:
    (tmp_path / "util.py").write_text("def helper(x):\n    return x + 1\n")
    text = "from util import helper\n\n" + source(60) + "value = helper("
    path = tmp_path / "main.py"
    path.write_text(text)
    h = Harness(tmp_path)
    h.start()
    try:
        uri = h.open(path, text)
        assert h.client is not None
        line = text.count("\n")
        h.call(h.client.protocol.notify, "codefill/didFocus",
               {"textDocument": {"uri": uri}, "position": {"line": line, "character": 6}})
        deadline = time.monotonic() + 120
        while (h.status()["prefill"]["done"] < 1 or h.status()["context"]["state"] != "ready"
               ) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # a re-prefill for the index becoming ready, if it did meanwhile
        before = h.status()["prefill"]
        (tmp_path / "util.py").write_text("def helper(x):\n    return x + 2\n\n\n"
                                          "def other(y):\n    return y\n")
        while (h.status()["prefill"]["context_changes"] == before["context_changes"]
               and time.monotonic() < deadline):
            time.sleep(0.2)
        while h.status()["prefill"]["done"] == before["done"] and time.monotonic() < deadline:
            time.sleep(0.2)
        after = h.status()["prefill"]
        assert after["context_changes"] > before["context_changes"], after
        assert after["done"] > before["done"], after
    finally:
        h.stop()


def test_a_change_to_repository_context_prefills_the_last_request_place(tmp_path: Path) -> None:
    """Opening a file focuses its first line; a request further down is where the user is, so
    a context change prefills that place again, not the first line (whose prompt would push
    the request's out of the cache)."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "util.py").write_text("def helper(x):\n    return x + 1\n")
    text = "from util import helper\n\n" + source(60) + "value = helper("
    path = root / "main.py"
    path.write_text(text)
    record = tmp_path / "prompts.jsonl"
    h = Harness(root, record_prompts=record)
    h.start()
    try:
        uri = h.open(path, text)
        line = text.count("\n")
        assert h.inline(uri, line, len("value = helper(")) is not None
        deadline = time.monotonic() + 120
        while h.status()["context"]["state"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # a re-prefill for the index becoming ready, if it did meanwhile
        seen = len(record.read_text().splitlines())
        before = h.status()["prefill"]
        (root / "util.py").write_text("def helper(x):\n    return x + 2\n\n\n"
                                      "def other(y):\n    return y\n")
        while (h.status()["prefill"]["context_changes"] == before["context_changes"]
               or len(record.read_text().splitlines()) == seen) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        h.stop()
    new = [json.loads(r) for r in record.read_text().splitlines()[seen:]]
    prefills = [r for r in new if r["kind"] == "prefill"]
    assert prefills, new
    assert all(r["prompt"].endswith("value = helper(") for r in prefills), prefills
