"""Remote engines (lsp_server/engine/remote, lsp_server/completion/remote_session.py).

Unit tests of the wire formats and budgets, then the real thing: llama.cpp's llama-server
(built by scripts/build-llama-server) and llama-cpp-python's OpenAI-compatible server on
127.0.0.1, with every fault of docs/deployment.md ("What happens when the server misbehaves")
injected through tests/remote_servers.FaultProxy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from bench.common import (fim_test_model, llama_server_binary, openai_server_available,
                          start_llama_server, start_openai_server, why_no_llama_server)
from lsp_server.completion.backend import InfillRequest
from lsp_server.completion.completer import complete_text
from lsp_server.completion.factory import open_backend
from lsp_server.completion.remote_session import RemoteSession
from lsp_server.config import Config
from lsp_server.engine.remote import RemoteError, RemoteRequest, get_api
from lsp_server.engine.remote.http import Endpoint
from lsp_server.engine.types import EngineError, StopReason
from lsp_server.errors import CodefillError
from lsp_server.prompt.assemble import ContextFile
from tests.remote_servers import FaultProxy

PREFIX = "import math\n\n\ndef circle_area(radius):\n    return "
SUFFIX = "\n\n\nprint(circle_area(2))\n"
HELPER = ContextFile("geometry/util.py", "def square(x):\n    return x * x\n")
KEY_ENV = "CODEFILL_TEST_REMOTE_KEY"


def posts(proxy: FaultProxy) -> list:
    """Generation requests the proxy saw (the startup probe is a GET)."""
    return [r for r in proxy.requests if r.method == "POST"]


def remote_config(url: str, **remote: object) -> Config:
    cfg = Config()
    cfg.remote.url = url
    cfg.remote.retries = 2
    cfg.remote.backoff_ms = 20
    cfg.remote.read_timeout_ms = 120000  # a loaded 2-core machine answers slowly
    cfg.remote.api_key_env = KEY_ENV
    cfg.engine.time_budget_ms = 120000
    cfg.prompt.max_tokens = 8
    cfg.completion.candidates = 1  # one request per completion (candidates: their own tests)
    for k, v in remote.items():
        setattr(cfg.remote, k, v)
    return cfg


# --- units: no server ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["gpu-box:8080", "ftp://gpu-box", "http://", "http://h:99999"])
def test_bad_urls_are_refused_with_the_value(url: str) -> None:
    with pytest.raises(RemoteError) as err:
        Endpoint.parse(url)
    assert "remote.url" in str(err.value)


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(RemoteError, match="api_key_env"):
        Endpoint.parse("http://user:secret@gpu-box:8080")


def test_unknown_api_is_refused_with_the_known_ones() -> None:
    with pytest.raises(RemoteError, match="'tgi'.*llama-server, openai"):
        get_api("tgi")


def test_llama_server_infill_body() -> None:
    path, body = get_api("llama-server").build(RemoteRequest(
        prefix="a", suffix="b", context=(HELPER,), max_tokens=7, time_budget_ms=900))
    assert path == "/infill"
    assert body["input_prefix"] == "a" and body["input_suffix"] == "b"
    assert body["input_extra"] == [{"filename": HELPER.path, "text": HELPER.text}]
    assert body["cache_prompt"] is True and body["stream"] is True
    assert body["n_predict"] == 7 and body["t_max_predict_ms"] == 900
    assert body["top_k"] == 1  # greedy


def test_llama_server_final_event_gives_stats() -> None:
    api = get_api("llama-server")
    assert api.parse({"content": "x", "stop": False}).text == "x"
    end = api.parse({"content": "", "stop": True, "stop_type": "limit", "tokens_evaluated": 50,
                     "timings": {"prompt_n": 5, "predicted_n": 8}})
    assert end.done and end.reason is StopReason.MAX_TOKENS
    assert end.stats == {"prompt": 50, "evaluated": 5, "reused": 45, "generated": 8}
    with pytest.raises(RemoteError, match="boom"):
        api.parse({"error": {"code": 500, "message": "boom"}})


def test_openai_bodies_and_events() -> None:
    api = get_api("openai")
    path, body = api.build(RemoteRequest(prefix="a", suffix="b", model="coder", max_tokens=3))
    assert path == "/v1/completions"
    assert (body["prompt"], body["suffix"], body["model"], body["stream"]) == ("a", "b", "coder",
                                                                              True)
    _, raw = api.build(RemoteRequest(prefix="a", suffix="b", prompt="<P>a<S>b<M>"))
    assert raw["prompt"] == "<P>a<S>b<M>" and "suffix" not in raw
    assert api.parse({"choices": [{"text": "y", "finish_reason": None}]}).text == "y"
    end = api.parse({"choices": [{"text": "", "finish_reason": "length"}]})
    assert end.done and end.reason is StopReason.MAX_TOKENS
    with pytest.raises(RemoteError, match="without choices"):
        api.parse({"object": "text_completion"})


def test_remote_request_is_cut_to_the_character_budget() -> None:
    cfg = remote_config("http://127.0.0.1:9", context_size=512)
    session = RemoteSession(cfg)
    prefix = "".join(f"line_{i} = {i}\n" for i in range(2000)) + "x = "
    suffix = "".join(f"after_{i}()\n" for i in range(2000))
    big = ContextFile("big.py", "z = 1\n" * 5000)
    r = session.remote_request(InfillRequest(prefix, suffix, context=(HELPER, big), max_tokens=8))
    budget = (512 - 8 - 1) * 3
    assert len(r.prefix) + len(r.suffix) + sum(len(f.text) for f in r.context) <= budget
    assert r.prefix.endswith("line_1999 = 1999\nx = ") and r.prefix.startswith("line_")
    assert r.suffix.startswith("after_0()\n") and r.suffix.endswith("\n")
    assert [f.path for f in r.context] == [HELPER.path]  # the big file does not fit


def test_infill_request_stays_inside_llama_servers_window_and_its_cut_is_sticky() -> None:
    """llama-server's /infill drops prefix tokens beyond 3/4·batch from the far end, which moves
    the prompt's start at every keystroke (no prompt-cache reuse). The daemon cuts first, at a
    line start well inside the window, and keeps that cut while the user types on."""
    cfg = remote_config("http://127.0.0.1:9", context_size=8192, infill_batch=1024)
    session = RemoteSession(cfg)
    prefix = "".join(f"line_{i} = {i}\n" for i in range(2000)) + "x = "
    suffix = "".join(f"after_{i}()\n" for i in range(2000))
    r = session.remote_request(InfillRequest(prefix, suffix, max_tokens=8))
    assert len(r.prefix) <= 768 * 3 and len(r.suffix) <= 254 * 3
    assert r.prefix.startswith("line_") and r.prefix.endswith("x = ")
    assert r.suffix.startswith("after_0()\n")
    starts = {r.prefix.split("\n", 1)[0]}
    typed = prefix
    for ch in "math.sqrt(2) + 1\ny = [i for i in range(10)]\nz = 3":
        typed += ch
        r2 = session.remote_request(InfillRequest(typed, suffix, max_tokens=8))
        assert r2.prefix.endswith(typed[-5:])
        starts.add(r2.prefix.split("\n", 1)[0])
    assert len(starts) == 1  # 47 keystrokes, two new lines: the prompt still starts the same
    # Much more typing does move it, by a quarter window at once.
    r3 = session.remote_request(InfillRequest(typed + "w = 0\n" * 200, suffix, max_tokens=8))
    assert r3.prefix.split("\n", 1)[0] not in starts
    assert len(r3.prefix) <= 768 * 3


def test_text_prompt_cut_is_sticky_too() -> None:
    """A prompt the daemon renders for a remote server (raw OpenAI prompt with a template) keeps
    its start while the user types, as the local engine's does: the server's prompt cache is
    only reused up to the first changed character."""
    cfg = remote_config("http://127.0.0.1:9", api="openai", openai_fim="raw", context_size=1024)
    cfg.prompt.template = "qwen2.5-coder"
    session = RemoteSession(cfg)
    prefix = "".join(f"line_{i} = {i}\n" for i in range(2000)) + "x = "
    suffix = "".join(f"after_{i}()\n" for i in range(2000))
    budget = (1024 - 8 - 1) * 3  # characters

    def first_prefix_line(typed: str) -> str:
        r = session.remote_request(InfillRequest(typed, suffix, max_tokens=8))
        assert r.prompt is not None
        body = r.prompt.split("<|fim_prefix|>", 1)[1].split("<|fim_suffix|>", 1)[0]
        assert typed.endswith(body) and len(body) >= budget * 0.75 * 0.5, len(body)
        return body.split("\n", 1)[0]

    starts = {first_prefix_line(prefix)}
    typed = prefix
    for ch in "math.sqrt(2) + 1\ny = [i for i in range(10)]\nz = 3":
        typed += ch
        starts.add(first_prefix_line(typed))
    assert len(starts) == 1  # 47 keystrokes, two new lines: the prompt still starts the same
    assert first_prefix_line(typed + "w = 0\n" * 200) not in starts  # much more typing moves it


def test_raw_openai_prompt_uses_the_template() -> None:
    cfg = remote_config("http://127.0.0.1:9", api="openai", openai_fim="raw")
    with pytest.raises(CodefillError, match="prompt.template"):
        RemoteSession(cfg)
    cfg.prompt.template = "qwen2.5-coder"
    r = RemoteSession(cfg).remote_request(InfillRequest("def f(", "):\n", path="m.py",
                                                        context=(HELPER,)))
    assert r.prompt is not None
    assert r.prompt.startswith("<|repo_name|>")
    assert f"<|file_sep|>{HELPER.path}\n{HELPER.text}" in r.prompt
    assert r.prompt.endswith("<|fim_prefix|>def f(<|fim_suffix|>):\n<|fim_middle|>")
    assert "<|file_sep|>" in r.stop


def test_unknown_template_is_refused_for_remote_too() -> None:
    cfg = remote_config("http://127.0.0.1:9")
    cfg.prompt.template = "nope"
    with pytest.raises(CodefillError, match="nope"):
        RemoteSession(cfg)


def test_the_api_key_comes_from_the_environment_and_stays_out_of_messages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-key-0123")
    with FaultProxy() as proxy:
        proxy.set("status", status=401, body={"error": {"message": "invalid api key"}})
        session = RemoteSession(remote_config(proxy.url))
        with pytest.raises(EngineError) as err:
            complete_text(session, PREFIX, SUFFIX)
        assert f"${KEY_ENV}" in str(err.value) and "401" in str(err.value)
        assert "sk-test-key-0123" not in str(err.value)
        assert "sk-test-key-0123" not in str(session.status())
        assert proxy.requests[-1].header("Authorization") == "Bearer sk-test-key-0123"
        assert len(posts(proxy)) == 1  # a refused key is not retried


def test_server_down_is_retried_then_reported() -> None:
    with FaultProxy() as proxy:
        proxy.set("down")
        session = RemoteSession(remote_config(proxy.url))
        with pytest.raises(EngineError, match="connection refused"):
            complete_text(session, PREFIX, SUFFIX)
        assert session.engine.health.retries == 2
        assert session.status()["remote"]["health"] == "failing"


@pytest.mark.parametrize(("mode", "kwargs", "message"), [
    ("status", {"status": 500, "body": {"error": {"message": "model crashed"}}},
     "500.*model crashed"),
    ("malformed", {}, "malformed JSON"),
    ("redirect", {"redirect_to": "http://evil.example:8080"}, "another host"),
])
def test_bad_answers_get_a_clear_error_without_retry(mode: str, kwargs: dict, message: str
                                                    ) -> None:
    with FaultProxy() as proxy:
        proxy.set(mode, **kwargs)
        session = RemoteSession(remote_config(proxy.url))
        with pytest.raises(EngineError, match=message):
            complete_text(session, PREFIX, SUFFIX)
        assert len(posts(proxy)) == 1
        assert session.engine.health.state == "failing"


def test_fallback_to_the_local_engine_when_the_remote_is_down() -> None:
    with FaultProxy() as proxy:
        proxy.set("down")
        cfg = remote_config(proxy.url, fallback=True, retries=0)
        with open_backend(cfg) as session:
            c = complete_text(session, PREFIX, SUFFIX, max_tokens=4)
            assert c.stats.n_generated > 0  # the local model answered
            assert session.status()["remote"]["fallbacks"] == 1
            assert session.status()["fallback"]["backend"] == "local"


# --- llama-server -------------------------------------------------------------------------------

needs_llama_server = pytest.mark.skipif(llama_server_binary() is None,
                                        reason=why_no_llama_server() or "no llama-server")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if llama_server_binary() is None:
        pytest.skip(why_no_llama_server())
    model = fim_test_model()
    with start_llama_server(model, ctx=2048,
                            log_dir=tmp_path_factory.mktemp("llama-server")) as srv:
        yield srv


@pytest.fixture()
def proxy(llama_server: object) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.url) as p:  # type: ignore[attr-defined]
        yield p


@needs_llama_server
def test_infill_streams_with_repository_context(proxy: FaultProxy) -> None:
    session = RemoteSession(remote_config(proxy.url))
    session.wait_ready()
    assert session.n_ctx == 2048  # from /props
    c = complete_text(session, PREFIX, SUFFIX, path="geometry/main.py", context=[HELPER],
                         single_line=False, max_tokens=6)
    assert c.stats.n_generated > 0 and c.stats.n_prompt > 0
    req = [r for r in proxy.requests if r.path == "/infill"][-1]
    body = req.json
    assert body["input_extra"] == [{"filename": HELPER.path, "text": HELPER.text}]
    assert body["input_prefix"] == PREFIX and body["input_suffix"] == SUFFIX
    assert body["cache_prompt"] and body["stream"] and body["n_predict"] == 6
    # The same prompt again: the server's KV cache holds it.
    again = complete_text(session, PREFIX, SUFFIX, path="geometry/main.py", context=[HELPER],
                             single_line=False, max_tokens=6)
    assert again.text == c.text  # greedy
    assert again.stats.n_reused >= c.stats.n_prompt - 1
    assert session.counters.requests == 2


@needs_llama_server
def test_plain_template_uses_completion(proxy: FaultProxy) -> None:
    cfg = remote_config(proxy.url)
    cfg.prompt.template = "plain"
    c = complete_text(RemoteSession(cfg), PREFIX, SUFFIX, context=[HELPER], max_tokens=4)
    assert c.stats.n_generated > 0
    body = proxy.requests[-1].json
    assert proxy.requests[-1].path == "/completion"
    assert body["prompt"].endswith(PREFIX) and "# file: geometry/util.py" in body["prompt"]


@needs_llama_server
def test_cancel_closes_the_http_stream(proxy: FaultProxy) -> None:
    proxy.set("slow", chunk_delay=0.5)  # a slow stream: still running when we cancel
    session = RemoteSession(remote_config(proxy.url))
    stream = session.generate(InfillRequest(PREFIX, SUFFIX, max_tokens=64))
    first = next(iter(stream))
    assert first.text is not None
    stream.cancel()
    assert stream.wait(10).stop_reason is StopReason.CANCELLED
    assert proxy.wait_client_close(10).path == "/infill"


@needs_llama_server
def test_cancel_while_waiting_for_a_slow_server(proxy: FaultProxy) -> None:
    proxy.set("slow", delay=30)
    session = RemoteSession(remote_config(proxy.url))
    stream = session.generate(InfillRequest(PREFIX, SUFFIX, max_tokens=4))
    proxy.wait_requests(1)
    t0 = time.monotonic()
    stream.cancel()
    assert stream.wait(10).stop_reason is StopReason.CANCELLED
    assert time.monotonic() - t0 < 5


@needs_llama_server
def test_slow_server_hits_the_read_timeout(proxy: FaultProxy) -> None:
    proxy.set("slow", delay=30)
    session = RemoteSession(remote_config(proxy.url, read_timeout_ms=500, retries=0))
    with pytest.raises(EngineError, match="did not answer in time"):
        complete_text(session, PREFIX, SUFFIX, max_tokens=4)


@needs_llama_server
@pytest.mark.parametrize(("status", "headers"), [(503, {}), (429, {"Retry-After": "0"})])
def test_busy_server_is_retried_with_backoff(proxy: FaultProxy, status: int,
                                             headers: dict[str, str]) -> None:
    proxy.set("status", status=status, headers=headers, fail_times=2, only_paths=["/infill"])
    session = RemoteSession(remote_config(proxy.url))
    c = complete_text(session, PREFIX, SUFFIX, max_tokens=4)
    assert c.stats.n_generated > 0
    assert session.engine.health.retries == 2 and len(posts(proxy)) == 3
    assert session.engine.health.state == "ok"


@needs_llama_server
def test_stream_cut_midway_is_an_error(proxy: FaultProxy) -> None:
    proxy.set("cut", cut_after_events=2)
    session = RemoteSession(remote_config(proxy.url))
    with pytest.raises(EngineError, match="stopped before its end|broke mid-answer"):
        complete_text(session, PREFIX, SUFFIX, single_line=False, max_tokens=16)
    assert len(posts(proxy)) == 1  # text had arrived: no silent retry


@needs_llama_server
def test_recovers_when_the_server_comes_back(proxy: FaultProxy) -> None:
    proxy.set("down")
    session = RemoteSession(remote_config(proxy.url, retries=0))
    with pytest.raises(EngineError):
        complete_text(session, PREFIX, SUFFIX, max_tokens=4)
    assert session.engine.health.state == "failing"
    proxy.set("pass")
    assert complete_text(session, PREFIX, SUFFIX, max_tokens=4).stats.n_generated > 0
    assert session.engine.health.state == "ok"


@needs_llama_server
def test_real_server_with_an_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with start_llama_server(fim_test_model(), ctx=1024, api_key="right-key-42",
                            log_dir=tmp_path) as srv:
        monkeypatch.setenv(KEY_ENV, "wrong-key-13")
        session = RemoteSession(remote_config(srv.url))
        with pytest.raises(EngineError, match=f"401.*check the API key in \\${KEY_ENV}") as err:
            complete_text(session, PREFIX, SUFFIX, max_tokens=4)
        assert "wrong-key-13" not in str(err.value)
        monkeypatch.setenv(KEY_ENV, "right-key-42")
        assert complete_text(session, PREFIX, SUFFIX, max_tokens=4).stats.n_generated > 0


# --- llama-cpp-python's OpenAI-compatible server ------------------------------------------------

@pytest.fixture(scope="module")
def openai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    why = openai_server_available()
    if why:
        pytest.skip(why)
    from lsp_server.models.resolve import resolve_model

    with start_openai_server(resolve_model(""), ctx=1024,
                             log_dir=tmp_path_factory.mktemp("openai")) as srv:
        yield srv


def test_openai_raw_prompt_streams(openai_server: object) -> None:
    with FaultProxy(openai_server.url) as proxy:  # type: ignore[attr-defined]
        cfg = remote_config(proxy.url, api="openai", openai_fim="raw", model="m")
        cfg.prompt.template = "plain"
        c = complete_text(RemoteSession(cfg), PREFIX, SUFFIX, context=[HELPER], max_tokens=4)
        assert c.stats.n_generated > 0
        body = proxy.requests[-1].json
        assert proxy.requests[-1].path == "/v1/completions"
        assert body["prompt"].endswith(PREFIX) and "suffix" not in body and body["model"] == "m"


def test_openai_suffix_mode_sends_prompt_and_suffix(openai_server: object) -> None:
    with FaultProxy(openai_server.url) as proxy:  # type: ignore[attr-defined]
        cfg = remote_config(proxy.url, api="openai")
        c = complete_text(RemoteSession(cfg), PREFIX, SUFFIX, context=[HELPER], max_tokens=4)
        assert c.stop
        body = proxy.requests[-1].json
        assert body["suffix"] == SUFFIX and body["prompt"].endswith(PREFIX)
        assert body["prompt"].startswith("# file: geometry/util.py\n")


# --- several candidates from a remote server -----------------------------------------------------

def test_logprobs_are_asked_for_and_summed() -> None:
    from lsp_server.completion.remote_session import _logprob
    from lsp_server.engine.types import TokenEvent

    r = RemoteRequest(prefix="a", suffix="b", logprobs=True)
    assert get_api("llama-server").build(r)[1]["n_probs"] == 1
    assert get_api("openai").build(r)[1]["logprobs"] == 1
    assert "n_probs" not in get_api("llama-server").build(RemoteRequest("a", "b"))[1]
    ls = get_api("llama-server").parse({"content": " x", "completion_probabilities": [
        {"id": 1, "logprob": -0.5}, {"id": 2, "logprob": -0.25}]})
    assert (ls.text, ls.logprob) == (" x", -0.75)
    oa = get_api("openai").parse({"choices": [{"text": "y", "logprobs": {
        "token_logprobs": [-1.0, None]}}]})
    assert (oa.text, oa.logprob) == ("y", -1.0)
    assert get_api("llama-server").parse({"content": "z"}).logprob == 0.0  # not reported
    events = [TokenEvent(-1, "ret", -1.0), TokenEvent(-1, "urn", -2.0), TokenEvent(-1, "\n", -4.0)]
    assert _logprob(events, "return") == -3.0 and _logprob(events, "retu") == -3.0


@needs_llama_server
def test_llama_server_gives_ranked_samples_with_logprobs(proxy: FaultProxy) -> None:
    from lsp_server.completion.completer import Completer, Cursor

    cfg = remote_config(proxy.url)
    cfg.completion.candidates = 3
    session = RemoteSession(cfg)
    c = Completer(session).complete(Cursor(PREFIX, SUFFIX, "geometry/main.py"),
                                    single_line=True, max_tokens=8, context=[HELPER])
    bodies = [r.json for r in posts(proxy)]
    # The suggestion, then two samples of the same prompt with the next seeds.
    assert len(bodies) == 3 and all(b["n_probs"] == 1 for b in bodies)
    assert bodies[0]["temperature"] == 0 and [b["temperature"] for b in bodies[1:]] == [0.7, 0.7]
    assert [b["seed"] - bodies[0]["seed"] for b in bodies[1:]] == [1, 2]
    assert all(b["input_prefix"] == bodies[0]["input_prefix"] for b in bodies)
    cands = c.candidates
    assert 1 <= len(cands) <= 3 and c.text == cands[0].text
    assert {x.origin for x in cands} <= {"greedy", "sample"} and len({x.text for x in cands}) \
        == len(cands)
    # The server's log-probabilities reached the ranking (an empty suggestion has none and is
    # dropped by it), and no suffix is scored remotely.
    assert cands and all(x.logprob < 0 for x in cands if x.text), \
        [(x.origin, x.text, x.logprob) for x in cands]
    assert all(x.suffix_logprob is None for x in cands)
    # Each says why it ended (8 tokens, single line: a stop rule or the token limit).
    assert c.stop == cands[0].stop and all(x.stop for x in cands), [(x.text, x.stop) for x in cands]
    # Every request is a candidate or a repeat of one, in the order the requests were sent.
    made = [x.order for x in cands] + [o for x in cands for _, o in x.repeats]
    assert set(made) <= {0, 1, 2} and len(set(made)) == len(made), made
    assert session.counters.requests == 3


def test_openai_server_reports_logprobs_for_samples(openai_server: object) -> None:
    from lsp_server.completion.completer import Completer, Cursor

    with FaultProxy(openai_server.url) as proxy:  # type: ignore[attr-defined]
        cfg = remote_config(proxy.url, api="openai", openai_fim="raw", model="m")
        cfg.prompt.template = "plain"
        cfg.completion.candidates = 2
        c = Completer(RemoteSession(cfg)).complete(Cursor(PREFIX, SUFFIX, "geometry/main.py"),
                                                   single_line=True, max_tokens=4)
        bodies = [r.json for r in posts(proxy)]
        assert len(bodies) == 2 and all(b["logprobs"] == 1 for b in bodies)
        assert bodies[1]["temperature"] == 0.7
        assert any(x.logprob < 0 for x in c.candidates), c.candidates


# --- the language server with a remote engine ---------------------------------------------------

@needs_llama_server
def test_language_server_completes_through_llama_server(proxy: FaultProxy, tmp_path: Path
                                                        ) -> None:
    import json

    from bench.common import Harness

    root = tmp_path / "ws"
    (root / "geometry").mkdir(parents=True)
    (root / "geometry" / "__init__.py").write_text("")
    (root / "geometry" / "shapes.py").write_text(
        "class Square:\n    def __init__(self, side):\n        self.side = side\n")
    (root / ".env").write_text("API_KEY=sk-canary-remote-0001\n")
    settings = {"remote": {"url": proxy.url, "retries": 0, "read_timeout_ms": 120000},
                "engine": {"time_budget_ms": 120000}, "prompt": {"max_tokens": 8},
                "completion": {"debounce_min_ms": 0, "debounce_max_ms": 0, "mode": "multi"}}
    h = Harness(root, settings=settings)
    try:
        h.start()
        st = h.status()["model"]
        assert st["backend"] == "llama-server" and st["context_size"] == 2048, st
        uri = h.open(root / "geometry" / "main.py",
                     "from geometry.shapes import Square\n\nsq = Square(3)\nprint(sq.")
        h.inline(uri, 3, 9)
        bodies = [r.json for r in posts(proxy)]
        assert bodies and bodies[-1]["input_prefix"].endswith("print(sq.")
        assert [e["filename"] for e in bodies[-1]["input_extra"]] == ["geometry/shapes.py"]
        assert not any("sk-canary" in json.dumps(b) for b in bodies)
        assert h.counters()["model_calls"] >= 1

        # The server goes away: a clear message and status, the language server stays up.
        proxy.set("down")
        n = len(h.messages)
        other = h.open(root / "other.py", "def add(a, b):\n    return ")
        assert not h.inline(other, 1, 11)
        deadline = time.monotonic() + 30
        while not any("remote engine failing" in m.message for m in h.messages[n:]):
            assert time.monotonic() < deadline, [m.message for m in h.messages]
            time.sleep(0.05)
        remote = h.status()["model"]["remote"]
        assert remote["health"] == "failing" and "connection refused" in remote["last_error"]
        assert "engine error" in h.status()["completion"]["last_empty_reason"]

        # It comes back: completions resume, the status says so.
        proxy.set("pass")
        h.change(other, (1, 11), (1, 11), "a")
        h.inline(other, 1, 12)
        assert h.status()["model"]["remote"]["health"] == "ok"
        assert any("is answering" in m.message for m in h.messages[n:])
    finally:
        assert h.stop() == 0


# --- TLS ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A tiny HTTPS server with a self-signed certificate that answers like llama-server's
    /infill stream: it isolates the HTTP client's TLS handling (the certificate checks)."""
    import http.server
    import shutil
    import ssl
    import subprocess
    import threading

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, ctype: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._send("application/json", b'{"default_generation_settings": {"n_ctx": 1024}}')

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send("text/event-stream", b'data: {"content": "x * x", "stop": false}\n\n'
                       b'data: {"content": "", "stop": true, "stop_type": "eos"}\n\n')

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", cert
    httpd.shutdown()


def test_tls_certificates_are_verified_by_default(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    with pytest.raises(EngineError, match="TLS certificate.*not trusted.*remote.ca_file"):
        complete_text(RemoteSession(remote_config(url, retries=0)), "def sq(x):\n    return ", "")
    trusted = RemoteSession(remote_config(url, ca_file=str(cert)))
    assert complete_text(trusted, "def sq(x):\n    return ", "").text == "x * x"
    assert trusted.n_ctx == 1024
    unverified = RemoteSession(remote_config(url, verify_tls=False))
    assert complete_text(unverified, "def sq(x):\n    return ", "").text == "x * x"


@needs_llama_server
def test_context_size_is_learned_when_the_server_comes_up_late(proxy: FaultProxy) -> None:
    proxy.set("down")
    session = RemoteSession(remote_config(proxy.url, retries=0))
    session.wait_ready()  # the probe fails: the setting stands in
    assert session.n_ctx == 4096
    proxy.set("pass")
    complete_text(session, PREFIX, SUFFIX, max_tokens=2)
    deadline = time.monotonic() + 30
    while session.n_ctx != 2048:
        assert time.monotonic() < deadline, "the server's context size was never probed"
        time.sleep(0.05)


@needs_llama_server
def test_a_prefill_is_a_zero_token_infill_that_fills_the_servers_cache(proxy: FaultProxy
                                                                       ) -> None:
    session = RemoteSession(remote_config(proxy.url))
    big = PREFIX.replace("import math\n", "import math\n" + "x = 1\n" * 200)
    pre = session.generate(InfillRequest(big, SUFFIX, max_tokens=8, prefill=True)).wait(120)
    body = posts(proxy)[-1].json
    assert posts(proxy)[-1].path == "/infill" and body["n_predict"] == 0
    assert body["cache_prompt"] is True and pre.n_generated == 0
    assert pre.stop_reason is not StopReason.ERROR
    after = session.generate(InfillRequest(big, SUFFIX, max_tokens=4)).wait(120)
    assert after.n_generated > 0
    assert after.n_reused >= after.n_prompt - 8  # what the prefill evaluated was kept


def test_an_openai_server_gets_no_prefill() -> None:
    cfg = remote_config("http://127.0.0.1:9", api="openai")
    stream = RemoteSession(cfg).generate(InfillRequest(PREFIX, SUFFIX, prefill=True))
    assert stream.wait(1).stop_reason is StopReason.PREFILLED  # nothing was sent
