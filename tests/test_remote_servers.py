"""The remote-engine test infrastructure itself (the servers of bench/common/, the proxy of
tests/remote_servers.py).

Real servers on 127.0.0.1 — llama.cpp's llama-server (built by scripts/build-llama-server) and
llama-cpp-python's OpenAI-compatible server — answer the requests the remote engines make, and
FaultProxy injects each fault it promises. The FaultProxy cases that need no model run against a
scripted stdlib upstream, so that timing (chunk-by-chunk forwarding, client closes) is exact.
Generated lengths stay tiny (n_predict ≤ 8).
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.common import (
    FIM_TOKENS,
    RunningServer,
    fim_test_model,
    llama_server_binary,
    openai_server_available,
    start_llama_server,
    start_openai_server,
    why_no_llama_server,
)
from tests.remote_servers import FaultProxy, sse_data

needs_llama_server = pytest.mark.skipif(llama_server_binary() is None,
                                        reason=why_no_llama_server() or "llama-server")
needs_openai_server = pytest.mark.skipif(bool(openai_server_available()),
                                         reason=openai_server_available() or "server extra")

KEY = "test-key-123"
PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"
EXTRA = [{"filename": "util.py", "text": "def sub(a, b):\n    return a - b\n"}]


# ---------------------------------------------------------------------------------------------
# A small HTTP client (stdlib, like the engines)


class Response:
    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 started: float) -> None:
        self.conn, self.raw, self.started = conn, resp, started
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def body(self) -> bytes:
        try:
            return self.raw.read()
        finally:
            self.conn.close()

    def json(self) -> Any:
        return json.loads(self.body())

    def lines(self) -> Iterator[str]:
        """The body line by line as it arrives."""
        while True:
            line = self.raw.readline()
            if not line:
                return
            yield line.decode().rstrip("\r\n")

    def close(self) -> None:
        self.conn.close()


def request(url: str, path: str, body: Any = None, *, method: str | None = None,
            key: str | None = None, timeout: float = 300.0) -> Response:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    started = time.monotonic()
    conn.request(method or ("POST" if body is not None else "GET"), path, body=data,
                 headers=headers)
    return Response(conn, conn.getresponse(), started)


def infill_body(**overrides: Any) -> dict[str, Any]:
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": EXTRA,
            "cache_prompt": True, "n_predict": 8, "t_max_predict_ms": 20000, "temperature": 0,
            "stream": True}
    body.update(overrides)
    return body


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def fim_model() -> Path:
    return fim_test_model()


@pytest.fixture(scope="module")
def llama_server(fim_model: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RunningServer]:
    if llama_server_binary() is None:
        pytest.skip(why_no_llama_server())
    with start_llama_server(fim_model, log_dir=tmp_path_factory.mktemp("llama-server")) as s:
        yield s


@pytest.fixture(scope="module")
def openai_server(embedded_model: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[RunningServer]:
    if openai_server_available():
        pytest.skip(openai_server_available())
    with start_openai_server(embedded_model, log_dir=tmp_path_factory.mktemp("openai")) as s:
        yield s


@pytest.fixture
def proxy(llama_server: RunningServer) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.url) as p:
        yield p


# ---------------------------------------------------------------------------------------------
# llama-server


def test_fim_test_model_is_a_cached_copy_with_fim_ids(embedded_model: Path,
                                                      fim_model: Path) -> None:
    from lsp_server.models.gguf_header import read_header

    before = embedded_model.stat()
    assert fim_test_model() == fim_model  # cached: not written again
    assert fim_model.stat().st_mtime_ns == fim_test_model().stat().st_mtime_ns
    assert embedded_model.stat().st_mtime_ns == before.st_mtime_ns
    original, copy = read_header(embedded_model), read_header(fim_model)
    tokens = copy.metadata["tokenizer.ggml.tokens"]
    for role, text in FIM_TOKENS.items():
        assert f"tokenizer.ggml.{role}_token_id" not in original.metadata
        assert tokens[copy.metadata[f"tokenizer.ggml.{role}_token_id"]] == text
    assert {k: v for k, v in copy.metadata.items() if "fim" not in k} == original.metadata
    assert [(t.name, t.n_bytes) for t in copy.tensors] == \
        [(t.name, t.n_bytes) for t in original.tensors]


@pytest.mark.model
@needs_llama_server
def test_llama_server_infill_streams_sse_with_input_extra(llama_server: RunningServer) -> None:
    r = request(llama_server.url, "/infill", infill_body())
    assert r.status == 200, r.body()
    assert r.headers["content-type"].startswith("text/event-stream")
    lines = list(r.lines())
    assert "data: [DONE]" not in lines
    events = sse_data(lines)
    assert len(events) >= 2, events
    assert all("content" in e for e in events)
    final = events[-1]
    assert final["stop"] is True
    assert final["tokens_predicted"] <= 8
    assert final["generation_settings"]["n_predict"] == 8
    assert final["timings"]["prompt_n"] > 0
    # Token-by-token: more than one event carries text (or the model stopped at once).
    assert isinstance("".join(e["content"] for e in events), str)


@pytest.mark.model
@needs_llama_server
def test_llama_server_infill_uses_extra_context_and_prompt_cache(
        llama_server: RunningServer) -> None:
    def prompt_tokens(**kw: Any) -> tuple[int, int]:
        final = request(llama_server.url, "/infill", infill_body(stream=False, **kw)).json()
        return final["tokens_evaluated"], final["timings"]["prompt_n"]

    without, _ = prompt_tokens(input_extra=[], cache_prompt=False)
    with_extra, _ = prompt_tokens(cache_prompt=False)
    # [FIM_REP]myproject\n [FIM_SEP]util.py\n<text> [FIM_SEP]filename\n come before the prefix.
    assert with_extra > without + 10
    # The same request again with cache_prompt: (almost) nothing left to evaluate (this needs
    # --swa-full with Gemma 3; start_llama_server passes it).
    total, evaluated = prompt_tokens(cache_prompt=True)
    total2, evaluated2 = prompt_tokens(cache_prompt=True)
    assert total2 == total == with_extra
    assert evaluated2 <= 2 < total2


@pytest.mark.model
@needs_llama_server
def test_llama_server_t_max_predict_ms_stops_at_a_newline(llama_server: RunningServer) -> None:
    events = sse_data(request(llama_server.url, "/infill",
                              infill_body(t_max_predict_ms=1, cache_prompt=False)).lines())
    assert events[-1]["stop_type"] == "limit"
    pieces = [e["content"] for e in events if e["content"]]
    # Past the time limit, the first token holding a newline ends the generation — except the
    # first token: the generation clock starts after it.
    later = [i for i, piece in enumerate(pieces) if i >= 1 and "\n" in piece]
    assert not later or later[0] == len(pieces) - 1, pieces


@pytest.mark.model
@needs_llama_server
def test_llama_server_infill_request_errors(llama_server: RunningServer) -> None:
    r = request(llama_server.url, "/infill", {"input_suffix": SUFFIX})
    assert r.status == 500  # not 400: the handler falls through to a JSON exception
    assert "input_prefix" in r.json()["error"]["message"]
    r = request(llama_server.url, "/infill", infill_body(input_extra="not a list"))
    assert r.status == 400 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.model
@needs_llama_server
def test_llama_server_completion(llama_server: RunningServer) -> None:
    final = request(llama_server.url, "/completion",
                    {"prompt": PREFIX, "n_predict": 4, "temperature": 0}).json()
    assert isinstance(final["content"], str) and final["tokens_predicted"] <= 4
    events = sse_data(request(llama_server.url, "/completion",
                              {"prompt": PREFIX, "n_predict": 4, "stream": True}).lines())
    assert events[-1]["stop"] is True and len(events) >= 2


@pytest.mark.model
@needs_llama_server
def test_llama_server_refuses_infill_without_fim_tokens(embedded_model: Path,
                                                        tmp_path: Path) -> None:
    with start_llama_server(embedded_model, ctx=512, log_dir=tmp_path) as s:
        r = request(s.url, "/infill", infill_body(stream=False))
        assert r.status == 501
        error = r.json()["error"]
        assert error["type"] == "not_supported_error"
        assert "Infill is not supported by this model" in error["message"]
        # /completion still works.
        assert request(s.url, "/completion", {"prompt": "x", "n_predict": 1}).status == 200


@pytest.mark.model
@needs_llama_server
def test_llama_server_wrong_api_key(fim_model: Path, tmp_path: Path) -> None:
    with start_llama_server(fim_model, ctx=512, api_key=KEY, log_dir=tmp_path) as s:
        assert request(s.url, "/health").status == 200  # public
        for key in (None, "wrong"):
            r = request(s.url, "/infill", infill_body(stream=False), key=key)
            assert r.status == 401
            assert r.json()["error"]["type"] == "authentication_error"
        r = request(s.url, "/infill", infill_body(stream=False, n_predict=1), key=KEY)
        assert r.status == 200


# ---------------------------------------------------------------------------------------------
# llama-cpp-python's OpenAI-compatible server


def _usage(server: RunningServer, **body: Any) -> int:
    r = request(server.url, "/v1/completions", {"max_tokens": 1, "temperature": 0, **body})
    assert r.status == 200
    return r.json()["usage"]["prompt_tokens"]


@pytest.mark.model
@needs_openai_server
def test_openai_server_streams_completions(openai_server: RunningServer) -> None:
    r = request(openai_server.url, "/v1/completions",
                {"prompt": PREFIX, "max_tokens": 6, "temperature": 0, "stream": True})
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    raw = r.body()
    lines = raw.decode().splitlines()
    assert "data: [DONE]" in lines
    chunks = sse_data(lines)
    assert len(chunks) >= 2
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")


@pytest.mark.model
@needs_openai_server
def test_openai_server_parses_special_tokens_only_without_suffix(
        openai_server: RunningServer) -> None:
    plain = _usage(openai_server, prompt=PREFIX)
    # Without suffix the prompt is tokenized with special tokens parsed: the sentinel text is
    # one control token.
    assert _usage(openai_server, prompt="<start_of_turn>" + PREFIX) == plain + 1
    # With suffix (even empty) it is plain text: "<start_of_turn>" takes several tokens.
    with_suffix = _usage(openai_server, prompt=PREFIX, suffix="")
    assert _usage(openai_server, prompt="<start_of_turn>" + PREFIX, suffix="") > with_suffix + 3


@pytest.mark.model
@needs_openai_server
def test_openai_server_suffix_ignores_the_models_fim_tokens(
        openai_server: RunningServer, fim_model: Path, tmp_path: Path) -> None:
    """`suffix` adds three token-0 sentinels, FIM tokens in the GGUF or not; no suffix echo."""
    plain = _usage(openai_server, prompt=PREFIX)
    assert _usage(openai_server, prompt=PREFIX, suffix="") == plain + 3
    with start_openai_server(fim_model, ctx=512, log_dir=tmp_path) as fim:
        assert _usage(fim, prompt=PREFIX) == plain
        assert _usage(fim, prompt=PREFIX, suffix="") == plain + 3
        r = request(fim.url, "/v1/completions", {"prompt": PREFIX, "suffix": "#END#",
                                                  "max_tokens": 4, "temperature": 0})
        assert not r.json()["choices"][0]["text"].endswith("#END#")


@pytest.mark.model
@needs_openai_server
def test_openai_server_wrong_api_key(embedded_model: Path, tmp_path: Path) -> None:
    with start_openai_server(embedded_model, ctx=512, api_key=KEY, log_dir=tmp_path) as s:
        body = {"prompt": "x", "max_tokens": 1}
        for key in (None, "wrong"):
            r = request(s.url, "/v1/completions", body, key=key)
            assert r.status == 401
            assert "api key" in r.body().decode().lower()
        assert request(s.url, "/v1/completions", body, key=KEY).status == 200


# ---------------------------------------------------------------------------------------------
# FaultProxy against llama-server


@pytest.mark.model
@needs_llama_server
def test_proxy_pass_records_requests(proxy: FaultProxy) -> None:
    events = sse_data(request(proxy.url, "/infill", infill_body(), key=KEY).lines())
    assert events[-1]["stop"] is True
    (rec,) = proxy.wait_requests(1)
    proxy.wait_done(rec)
    assert (rec.method, rec.path, rec.fault, rec.status) == ("POST", "/infill", "pass", 200)
    assert rec.json["input_extra"] == EXTRA and rec.json["cache_prompt"] is True
    assert rec.header("Authorization") == f"Bearer {KEY}"
    assert rec.completed and not rec.closed_by_client
    assert rec.events_sent == len(events)


@pytest.mark.model
@needs_llama_server
def test_proxy_cut_after_events(proxy: FaultProxy) -> None:
    proxy.set("cut", cut_after_events=2)
    r = request(proxy.url, "/infill", infill_body())
    # http.client's readline() on a chunked body cut at an event boundary just ends, like a
    # complete stream: only the missing final event ("stop": true) shows the cut.
    events = sse_data(r.lines())
    assert len(events) == 2 and not any(e["stop"] for e in events)
    rec = proxy.wait_done(proxy.wait_requests(1)[0])
    assert rec.events_sent == 2 and not rec.completed
    # read() does notice the missing end of the chunked body.
    proxy.set("cut", cut_after_events=1)
    with pytest.raises(http.client.IncompleteRead):
        request(proxy.url, "/infill", infill_body()).raw.read()


@pytest.mark.model
@needs_llama_server
def test_proxy_client_close_is_recorded_and_stops_upstream(proxy: FaultProxy,
                                                           llama_server: RunningServer) -> None:
    # chunk_delay stretches the 8-token stream so that the client can leave in the middle.
    proxy.set("slow", chunk_delay=1.0)
    r = request(proxy.url, "/infill", infill_body())
    first = next(line for line in r.lines() if line.startswith("data:"))
    assert json.loads(first[5:])["content"] is not None
    r.close()
    rec = proxy.wait_client_close(timeout=30)
    assert rec.path == "/infill" and not rec.completed and rec.events_sent >= 1
    # llama-server's slot is free again (the proxy closed the upstream connection).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        slots = request(llama_server.url, "/slots").json()
        if not any(s.get("is_processing") for s in slots):
            break
        time.sleep(0.2)
    else:
        pytest.fail("llama-server still generating after the client went away")


@pytest.mark.model
@needs_openai_server
def test_proxy_pass_openai_stream(openai_server: RunningServer) -> None:
    with FaultProxy(openai_server.url) as p:
        lines = list(request(p.url, "/v1/completions", {"prompt": PREFIX, "max_tokens": 4,
                                                         "stream": True}, key=KEY).lines())
        rec = p.wait_done(p.wait_requests(1)[0])
        assert rec.completed and rec.header("authorization") == f"Bearer {KEY}"
        assert rec.events_sent == sum(1 for line in lines if line.startswith("data:"))


# ---------------------------------------------------------------------------------------------
# FaultProxy against a scripted upstream (no model)


class ScriptedUpstream:
    """An SSE upstream that sends ``events`` one by one, each after its gate is opened."""

    def __init__(self, n_events: int = 3) -> None:
        self.gates = [threading.Event() for _ in range(n_events)]
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.disconnected = threading.Event()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.requests.append((self.path, dict(self.headers), body))
                if self.path == "/json":
                    data = b'{"content": "hello", "stop": true}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i, gate in enumerate(upstream.gates):
                        gate.wait(30)
                        last = i == len(upstream.gates) - 1
                        event = b'data: {"content": "t%d", "stop": %s}\n\n' % (
                            i, b"true" if last else b"false")
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    upstream.disconnected.set()

            do_GET = do_POST

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def open_all(self) -> None:
        for g in self.gates:
            g.set()

    def close(self) -> None:
        self.open_all()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    u = ScriptedUpstream()
    yield u
    u.close()


@pytest.fixture
def stub_proxy(upstream: ScriptedUpstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url) as p:
        yield p


def _next_data(lines: Iterator[str]) -> dict[str, Any]:
    return json.loads(next(line for line in lines if line.startswith("data:"))[5:])


def test_proxy_forwards_each_event_as_it_arrives(upstream: ScriptedUpstream,
                                                 stub_proxy: FaultProxy) -> None:
    upstream.gates[0].set()
    r = request(stub_proxy.url, "/infill", {"stream": True}, timeout=10)
    lines = r.lines()
    # Event 0 arrives while the upstream still holds events 1 and 2.
    assert _next_data(lines)["content"] == "t0"
    upstream.gates[1].set()
    assert _next_data(lines)["content"] == "t1"
    upstream.gates[2].set()
    assert _next_data(lines) == {"content": "t2", "stop": True}
    assert [line for line in lines if line] == []
    rec = stub_proxy.wait_done(stub_proxy.requests[0])
    assert rec.completed and rec.events_sent == 3


def test_proxy_records_client_close_while_streaming(upstream: ScriptedUpstream,
                                                    stub_proxy: FaultProxy) -> None:
    upstream.gates[0].set()
    r = request(stub_proxy.url, "/infill", {"stream": True}, timeout=10)
    assert _next_data(r.lines())["content"] == "t0"
    r.close()
    upstream.gates[1].set()  # the next event finds the client gone
    rec = stub_proxy.wait_client_close(timeout=10)
    assert rec.events_sent == 1 and not rec.completed
    upstream.gates[2].set()
    assert upstream.disconnected.wait(10), "the proxy kept the upstream stream open"


def test_proxy_down_refuses_then_recovers(upstream: ScriptedUpstream,
                                          stub_proxy: FaultProxy) -> None:
    stub_proxy.set("down")
    with pytest.raises(ConnectionRefusedError):
        request(stub_proxy.url, "/json", {})
    stub_proxy.set("pass")
    assert request(stub_proxy.url, "/json", {}).json()["content"] == "hello"
    assert len(stub_proxy.requests) == 1  # the refused one never reached it


def test_proxy_reset_closes_at_once_then_passes(stub_proxy: FaultProxy) -> None:
    stub_proxy.set("reset", fail_times=1)
    with pytest.raises(ConnectionResetError):
        request(stub_proxy.url, "/json", {})
    assert request(stub_proxy.url, "/json", {}).json()["content"] == "hello"
    assert [r.fault for r in stub_proxy.requests] == ["reset", "pass"]


def test_proxy_slow_delays_the_first_byte(stub_proxy: FaultProxy) -> None:
    stub_proxy.set("slow", delay=1.5)
    r = request(stub_proxy.url, "/json", {})
    assert time.monotonic() - r.started >= 1.4
    assert r.json()["content"] == "hello"
    # A client that gives up first is recorded as closing the connection.
    stub_proxy.clear()
    stub_proxy.set("slow", delay=5)
    with pytest.raises(socket.timeout):
        request(stub_proxy.url, "/json", {}, timeout=0.5)
    rec = stub_proxy.wait_client_close(timeout=10)
    assert rec.status is None and rec.bytes_sent == 0


def test_proxy_status_with_retry_after_and_fail_times(upstream: ScriptedUpstream,
                                                      stub_proxy: FaultProxy) -> None:
    stub_proxy.set("status", status=429, headers={"Retry-After": "2"}, fail_times=2)
    for _ in range(2):
        r = request(stub_proxy.url, "/json", {})
        assert r.status == 429 and r.headers["retry-after"] == "2"
        assert r.json()["error"]["code"] == 429
    assert request(stub_proxy.url, "/json", {}).status == 200
    assert len(upstream.requests) == 1
    for status, body in ((500, None), (503, "busy"), (401, {"error": "bad key"})):
        stub_proxy.set("status", status=status, body=body)
        r = request(stub_proxy.url, "/json", {})
        assert r.status == status
        raw = r.body()
        if body == "busy":
            assert raw == b"busy"
        elif body:
            assert json.loads(raw) == body


def test_proxy_status_only_on_some_paths(stub_proxy: FaultProxy) -> None:
    stub_proxy.set("status", status=500, only_paths=["/infill"])
    assert request(stub_proxy.url, "/json", {}).status == 200
    assert request(stub_proxy.url, "/infill", {"stream": False}).status == 500


def test_proxy_malformed(stub_proxy: FaultProxy) -> None:
    stub_proxy.set("malformed")
    r = request(stub_proxy.url, "/json", {"stream": False})
    assert r.status == 200
    with pytest.raises(ValueError):
        json.loads(r.body())
    lines = list(request(stub_proxy.url, "/infill", {"stream": True}).lines())
    data = [line[5:] for line in lines if line.startswith("data:")]
    assert json.loads(data[0])["content"] == "ok"
    with pytest.raises(ValueError):
        for d in data[1:]:
            json.loads(d)


def test_proxy_cut_after_bytes(upstream: ScriptedUpstream, stub_proxy: FaultProxy) -> None:
    upstream.open_all()
    stub_proxy.set("cut", cut_after_bytes=10)
    r = request(stub_proxy.url, "/infill", {"stream": True})
    with pytest.raises(http.client.IncompleteRead):
        r.raw.read()
    rec = stub_proxy.wait_done(stub_proxy.requests[0])
    assert rec.bytes_sent == 10 and rec.events_sent == 0
    # Non-streaming: Content-Length promised, fewer bytes delivered.
    stub_proxy.set("cut", cut_after_bytes=5)
    with pytest.raises(http.client.IncompleteRead):
        request(stub_proxy.url, "/json", {}).body()


def test_proxy_redirect_to_another_host(stub_proxy: FaultProxy) -> None:
    with FaultProxy(None) as other:
        other.set("status", status=200, body={"content": "from the other host"})
        stub_proxy.set("redirect", redirect_to=other.url)
        r = request(stub_proxy.url, "/infill?x=1", {"stream": False}, key=KEY)
        assert r.status == 307
        assert r.headers["location"] == other.url + "/infill?x=1"
        r.body()
        assert other.requests == []  # http.client does not follow
        stub_proxy.set("redirect", redirect_to=other.url, redirect_status=302)
        assert request(stub_proxy.url, "/x", {}).status == 302


def test_proxy_without_upstream_answers_502() -> None:
    with FaultProxy(None) as p:
        assert request(p.url, "/infill", {}).status == 502
