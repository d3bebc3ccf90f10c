r"""What the real remote completion servers do, and a fault-injection proxy, for the remote-engine
tests.

Not a test file: the remote-engine tests import it. The servers themselves (llama.cpp's
``llama-server``, llama-cpp-python's OpenAI-compatible server, and :func:`fim_test_model`, the
embedded model with FIM token ids) are started by ``bench/common/``, which the benchmarks use
too. Everything listens on 127.0.0.1 only.

* :class:`FaultProxy`: a stdlib HTTP proxy in front of either server, whose behaviour the test
  switches at any time (down, slow, error statuses, malformed JSON, a stream cut mid-way,
  redirects), and which records the requests it received and the connections the client closed.

What the servers do with fill-in-the-middle (read from their source, checked by
tests/test_remote_servers.py):

llama-server ``/infill`` (tools/server/server-context.cpp, ``post_infill``)
    refuses a model whose vocabulary has no FIM prefix, suffix or middle token: HTTP 501,
    ``{"error": {"code": 501, "type": "not_supported_error", "message": "Infill is not supported
    by this model: prefix token is missing. suffix token is missing. middle token is missing. "}}``.
    The embedded Gemma 3 270M has none, hence :func:`fim_test_model`. With FIM tokens, the prompt
    is built from tokens (tools/server/server-common.cpp, ``format_prompt_infill``)::

        [FIM_REP]myproject\n [FIM_SEP]{filename}\n{text} ... [FIM_SEP]filename\n   (input_extra)
        [BOS] [FIM_PRE]{input_prefix}{prompt} [FIM_SUF]{input_suffix} [FIM_MID]

    (``--spm-infill`` puts the suffix part first). Without FIM_REP/FIM_SEP tokens the extra
    chunks are joined with a plain-text ``\n\n--- snippet ---\n\n`` separator instead.
    Surprises:

    - the extra context goes *before* BOS;
    - the request's ``prompt`` is appended to the prefix (before FIM_SUF), not after FIM_MID as
      the source comment claims;
    - ``input_prefix``/``input_suffix`` are tokenized without parsing special tokens;
    - the prefix is cut to 3/4 of ``n_batch`` tokens, the suffix to 1/4, and ``input_extra`` gets
      only ``n_ctx - n_batch - 2*n_predict`` tokens (n_predict: the server's ``-n``, default -1):
      with the default ``--batch-size`` 2048 and a 2048-token context the extra context is
      dropped without a word (see :func:`start_llama_server`);
    - a request without ``input_prefix`` or ``input_suffix`` gets HTTP 500 (``server_error``,
      "[json.exception.out_of_range.403] key 'input_prefix' not found"): the handler forgets to
      ``return`` after its 400 and then throws;
    - ``cache_prompt`` reuses nothing for a sliding-window model such as Gemma 3 unless the
      server runs with ``--swa-full``;
    - ``t_max_predict_ms`` is a soft limit: generation stops only when a token containing a
      newline arrives after the time has passed (``stop_type`` "limit"); the clock starts after
      the first generated token, so a newline as the first token never stops it.

    Errors are ``{"error": {"code", "message", "type"}}``: 401 ``authentication_error`` for a
    missing or wrong ``Authorization: Bearer`` key (``/health`` stays public), 501
    ``not_supported_error`` as above.
    Streams are ``data: {json}\n\n`` events, chunked; the last has ``"stop": true`` and carries
    ``timings``, ``tokens_evaluated``, ``stop_type``; there is no ``[DONE]``.

llama-cpp-python ``/v1/completions`` with ``suffix`` (llama_cpp/llama.py, ``_create_completion``)
    ignores the model's FIM tokens: the prefix, suffix and middle token ids are hard-coded to 0
    (``# self._model.token_prefix() # TODO: Fix``), so a request with ``suffix`` is evaluated as
    ``[BOS] 0 {prompt} 0 {suffix} 0`` with token 0 (``<pad>`` for Gemma) as every sentinel —
    the same with or without FIM tokens in the GGUF — and the suffix is not appended to the
    returned text. A remote engine must not send ``suffix`` to llama-cpp-python's server; it
    should send the whole FIM prompt as text. The prompt is tokenized with special tokens parsed
    when ``suffix`` is absent (``special=True``: sentinel text such as ``<start_of_turn>`` or
    ``<unused0>`` becomes its single control token) and as plain text when ``suffix`` is present.
    See ``test_openai_*`` for the token counts that show both. A missing or wrong key gets 401
    ``{"detail": "Invalid API key"}``. Streams are ``data: {json}\n\n`` events ending with
    ``data: [DONE]``.

Client side (stdlib ``http.client``): a chunked SSE stream that the server or a proxy cuts at an
event boundary reads like a complete one with ``readline()`` — only ``read()`` raises
``IncompleteRead`` — so a cut shows as a stream that ends without its final event (llama-server:
``"stop": true``; OpenAI: ``finish_reason`` and ``data: [DONE]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import http.client
import http.server
import json
import select
import socket
import struct
import threading
import time
import urllib.parse
from typing import Any, Iterable, Mapping

from bench.common import free_port

# ---------------------------------------------------------------------------------------------
# Fault-injection proxy

MODES = ("pass", "down", "reset", "slow", "status", "malformed", "cut", "redirect")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "host"}


@dataclasses.dataclass
class RecordedRequest:
    """One request the proxy received, and what became of its response."""

    index: int
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    fault: str  # the mode applied to it: "pass" or a fault
    time: float = dataclasses.field(default_factory=time.monotonic)
    status: int | None = None  # the status sent to the client
    bytes_sent: int = 0  # response body bytes sent to the client
    events_sent: int = 0  # complete SSE events sent to the client
    completed: bool = False  # the whole response reached the client
    closed_by_client: bool = False  # the client closed the connection before the end
    ended: bool = False  # the proxy is done with it (whatever the outcome)

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _ClientGone(Exception):
    pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (_ClientGone, OSError):  # the client went away, or the socket timed out
            self.close_connection = True

    def _dispatch(self) -> None:
        self.server.proxy._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class _ProxyHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)


class _SSECounter:
    r"""Finds where SSE events end (a blank line: "\n\n" or "\r\n\r\n") across chunks."""

    def __init__(self) -> None:
        self.newlines = 0  # consecutive line ends seen so far ("\r" ignored)

    def ends(self, data: bytes) -> list[int]:
        """Offsets just past each event end in data."""
        out = []
        for i, byte in enumerate(data):
            if byte == 0x0A:
                self.newlines += 1
                if self.newlines == 2:
                    out.append(i + 1)
                    self.newlines = 0
            elif byte != 0x0D:
                self.newlines = 0
        return out


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 (its own thread) in front of ``upstream``, with faults.

    Set the behaviour at any time with :meth:`set` (or the ``mode`` attribute):

    ``pass``
        forward the request and stream the response back as it arrives, chunk by chunk.
    ``down``
        stop listening: connections are refused (``fail_times`` does not apply: nothing reaches
        the proxy to be counted; set the mode back to end it).
    ``reset``
        accept the connection and close it at once (TCP RST), before any byte of a response.
    ``slow``
        wait ``delay`` seconds before the first byte of the response, then pass; ``chunk_delay``
        also waits before each later chunk of the response.
    ``status``
        answer ``status`` (500, 503, 429, 401 …) with ``body`` (str, bytes or JSON-able;
        default an OpenAI/llama-server style error object) and extra ``headers``
        (e.g. ``{"Retry-After": "2"}``), without asking upstream.
    ``malformed``
        answer 200 with a body that is not JSON: for a request with ``"stream": true`` an SSE
        stream whose ``data:`` lines are broken JSON, else a truncated JSON object
        (``body`` overrides either).
    ``cut``
        forward the response but close the connection after ``cut_after_bytes`` body bytes or
        ``cut_after_events`` complete SSE events (whichever comes first; the chunked body is
        never terminated, so the client sees an incomplete response).
    ``redirect``
        answer ``redirect_status`` (default 307) with ``Location: redirect_to`` + the request
        path (``redirect_to`` is the test's other host, e.g. another FaultProxy's url).

    ``fail_times=N`` applies the fault to the next N requests only, then passes. ``only_paths``
    limits faults to requests whose path starts with one of the given prefixes (others pass).
    Every request that reaches the proxy is recorded in :attr:`requests`, including the status
    sent, the bytes and SSE events sent, and whether the client closed the connection before
    the end (:meth:`closed_by_client`, :meth:`wait_client_close`).
    """

    def __init__(self, upstream: str | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, upstream_timeout: float = 600.0) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.upstream_timeout = upstream_timeout
        self.host = host
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.requests: list[RecordedRequest] = []
        self._settings: dict[str, Any] = {}
        self._faults_left: int | None = None
        self.set()
        self._httpd: _ProxyHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._listen(port)
        self.port = self._httpd.server_address[1]  # type: ignore[union-attr]

    # -- configuration ------------------------------------------------------------------------

    def set(self, mode: str = "pass", *, fail_times: int | None = None, delay: float = 0.0,
            chunk_delay: float = 0.0, status: int = 500, body: Any = None,
            headers: Mapping[str, str] | None = None, cut_after_bytes: int | None = None,
            cut_after_events: int | None = None, redirect_to: str | None = None,
            redirect_status: int = 307, only_paths: Iterable[str] | None = None) -> FaultProxy:
        """Switch to ``mode`` with these parameters (all others back to their defaults)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if mode == "redirect" and not redirect_to:
            raise ValueError("mode 'redirect' needs redirect_to")
        if mode == "cut" and cut_after_bytes is None and cut_after_events is None:
            raise ValueError("mode 'cut' needs cut_after_bytes or cut_after_events")
        with self._lock:
            self._settings = dict(
                mode=mode, delay=delay, chunk_delay=chunk_delay, status=status, body=body,
                headers=dict(headers or {}), cut_after_bytes=cut_after_bytes,
                cut_after_events=cut_after_events, redirect_to=redirect_to,
                redirect_status=redirect_status,
                only_paths=tuple(only_paths) if only_paths is not None else None)
            self._faults_left = fail_times
        if hasattr(self, "port"):  # (not while __init__ sets the defaults)
            self._apply_listening()
        return self

    @property
    def mode(self) -> str:
        return self._settings["mode"]

    @mode.setter
    def mode(self, value: str) -> None:
        self.set(value)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- listening ----------------------------------------------------------------------------

    def _listen(self, port: int) -> None:
        if self._settings["mode"] == "down":
            # Reserve the port number without listening: connections are refused.
            if port == 0:
                port = free_port(self.host)
            self.port = port
            return
        httpd = _ProxyHTTPServer((self.host, port), self)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                  name=f"FaultProxy:{httpd.server_address[1]}", daemon=True)
        thread.start()
        self._httpd, self._thread = httpd, thread

    def _apply_listening(self) -> None:
        if self._closed:
            return
        down = self._settings["mode"] == "down"
        if down and self._httpd is not None:
            httpd, self._httpd = self._httpd, None
            httpd.shutdown()
            httpd.server_close()
        elif not down and self._httpd is None and hasattr(self, "port"):
            for _ in range(50):  # the old socket may linger a moment
                try:
                    self._listen(self.port)
                    return
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    time.sleep(0.1)
            raise RuntimeError(f"FaultProxy cannot listen on port {self.port} again")

    def close(self) -> None:
        self._closed = True
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- records ------------------------------------------------------------------------------

    def closed_by_client(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.closed_by_client]

    def wait_requests(self, n: int, timeout: float = 30.0) -> list[RecordedRequest]:
        """Wait until at least n requests were received; returns them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"{len(self.requests)} requests reached the proxy, not {n}")
            return list(self.requests)

    def wait_client_close(self, timeout: float = 30.0) -> RecordedRequest:
        """Wait until the client closed a connection before its response ended."""
        with self._changed:
            if not self._changed.wait_for(
                    lambda: any(r.closed_by_client for r in self.requests), timeout):
                raise TimeoutError("no response was closed by the client")
            return next(r for r in self.requests if r.closed_by_client)

    def wait_done(self, request: RecordedRequest, timeout: float = 60.0) -> RecordedRequest:
        """Wait until the proxy finished with this request's response (any outcome)."""
        with self._changed:
            if not self._changed.wait_for(lambda: request.ended, timeout):
                raise TimeoutError(f"request {request.index} still in progress")
            return request

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _update(self, record: RecordedRequest, **changes: Any) -> None:
        with self._changed:
            for k, v in changes.items():
                setattr(record, k, v)
            self._changed.notify_all()

    # -- request handling ---------------------------------------------------------------------

    def _read_body(self, h: _Handler) -> bytes:
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(h.rfile.read(size))
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    def _handle(self, h: _Handler) -> None:
        body = self._read_body(h)
        with self._changed:
            s = dict(self._settings)
            fault = s["mode"]
            if fault != "pass" and s["only_paths"] is not None and not any(
                    h.path.startswith(p) for p in s["only_paths"]):
                fault = "pass"
            if fault != "pass" and self._faults_left is not None:
                if self._faults_left > 0:
                    self._faults_left -= 1
                else:
                    fault = "pass"
            record = RecordedRequest(len(self.requests), h.command, h.path,
                                     {k.lower(): v for k, v in h.headers.items()}, body, fault)
            self.requests.append(record)
            self._changed.notify_all()
        try:
            if fault == "down":
                # A request on a connection opened before the proxy went down: drop it.
                self._reset(h, record)
            elif fault == "reset":
                self._reset(h, record)
            elif fault == "status":
                self._reply_status(h, record, s)
            elif fault == "malformed":
                self._reply_malformed(h, record, s)
            elif fault == "redirect":
                location = s["redirect_to"].rstrip("/") + h.path
                self._send_simple(h, record, s["redirect_status"], b"", {"Location": location})
            else:
                if fault == "slow":
                    self._sleep_watching(h, record, s["delay"])
                self._forward(h, record, body, s if fault in ("slow", "cut") else None)
        except (_ClientGone, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self._update(record, closed_by_client=True)
            h.close_connection = True
        finally:
            self._update(record, ended=True)

    def _reset(self, h: _Handler, record: RecordedRequest) -> None:
        h.close_connection = True
        with contextlib.suppress(OSError):
            # SO_LINGER 0: closing sends RST instead of FIN. (The descriptor really closes when
            # the handler releases its rfile/wfile, before socketserver's shutdown(SHUT_WR)
            # could send a FIN.)
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            h.connection.close()
        self._update(record, status=0)

    @staticmethod
    def _client_closed(h: _Handler) -> bool:
        """Whether the client has closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([h.connection], [], [], 0)
            if not readable:
                return False
            return h.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _sleep_watching(self, h: _Handler, record: RecordedRequest, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if self._client_closed(h):
                raise _ClientGone
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _write(self, h: _Handler, data: bytes) -> None:
        if self._client_closed(h):
            raise _ClientGone
        try:
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise _ClientGone from exc

    def _send_head(self, h: _Handler, record: RecordedRequest, status: int,
                   headers: Iterable[tuple[str, str]]) -> None:
        h.send_response_only(status)
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()  # flushes the headers to the client
        self._update(record, status=status)

    def _send_simple(self, h: _Handler, record: RecordedRequest, status: int, body: bytes,
                     headers: Mapping[str, str], content_type: str = "application/json") -> None:
        extra = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        if not any(k.lower() == "content-type" for k in extra):
            extra["Content-Type"] = content_type
        self._send_head(h, record, status, [*extra.items(), ("Content-Length", str(len(body)))])
        if h.command != "HEAD" and body:
            self._write(h, body)
        self._update(record, bytes_sent=len(body), completed=True)

    def _reply_status(self, h: _Handler, record: RecordedRequest, s: dict[str, Any]) -> None:
        body = s["body"]
        if body is None:
            status = s["status"]
            body = {"error": {"code": status, "message": f"injected fault: HTTP {status}",
                              "type": "server_error" if status >= 500 else "invalid_request_error"}}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self._send_simple(h, record, s["status"], body, s["headers"])

    def _reply_malformed(self, h: _Handler, record: RecordedRequest, s: dict[str, Any]) -> None:
        streaming = isinstance(record.json, dict) and bool(record.json.get("stream"))
        body = s["body"]
        if streaming:
            if body is None:
                body = (b'data: {"content": "ok", "stop": false}\n\n'
                        b'data: {"content": "bro\n\n'
                        b"data: this is not json\n\n")
            elif isinstance(body, str):
                body = body.encode()
            head = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                    ("Transfer-Encoding", "chunked")]
            self._send_head(h, record, 200, head)
            self._write(h, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            self._update(record, bytes_sent=len(body), events_sent=len(_SSECounter().ends(body)),
                         completed=True)
        else:
            if body is None:
                body = b'{"content": "def f(x):\\n    return", "stop": tr'
            elif isinstance(body, str):
                body = body.encode()
            self._send_simple(h, record, 200, body, s["headers"])

    def _forward(self, h: _Handler, record: RecordedRequest, body: bytes,
                 s: dict[str, Any] | None) -> None:
        if not self.upstream:
            self._send_simple(h, record, 502, b'{"error": "FaultProxy has no upstream"}', {})
            return
        up = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port or 80,
                                          timeout=self.upstream_timeout)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = up.netloc
            if body or h.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            try:
                conn.request(h.command, up.path.rstrip("/") + h.path, body=body or None,
                             headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._send_simple(h, record, 502, json.dumps(
                    {"error": f"FaultProxy: upstream {self.upstream}: {exc}"}).encode(), {})
                return
            cut_bytes = s.get("cut_after_bytes") if s else None
            cut_events = s.get("cut_after_events") if s else None
            chunk_delay = s.get("chunk_delay", 0.0) if s else 0.0
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            length = resp.getheader("Content-Length")
            chunked = length is None and h.command != "HEAD" and resp.status not in (204, 304)
            out_headers.append(("Transfer-Encoding", "chunked") if chunked
                               else ("Content-Length", length or "0"))
            self._send_head(h, record, resp.status, out_headers)
            sent = 0
            events = 0
            counter = _SSECounter()
            first = True
            while True:
                # read1: whatever has arrived (one chunk of a chunked stream), without waiting
                # for more, so SSE events reach the client as the server sends them.
                data = resp.read1(65536) if h.command != "HEAD" else b""
                if not data:
                    break
                if chunk_delay and not first:
                    self._sleep_watching(h, record, chunk_delay)
                first = False
                cut = False
                if cut_bytes is not None and sent + len(data) >= cut_bytes:
                    data, cut = data[:max(0, cut_bytes - sent)], True
                ends = counter.ends(data)
                if cut_events is not None and events + len(ends) >= cut_events:
                    keep = cut_events - events  # events of this piece still to send
                    data, cut = (data[:ends[keep - 1]] if keep > 0 else b""), True
                    ends = ends[:max(0, keep)]
                if data:
                    self._write(h, b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                    sent += len(data)
                    events += len(ends)
                    self._update(record, bytes_sent=sent, events_sent=events)
                if cut:
                    h.close_connection = True
                    with contextlib.suppress(OSError):
                        h.connection.shutdown(socket.SHUT_RDWR)
                    return
            if chunked:
                self._write(h, b"0\r\n\r\n")
            self._update(record, completed=True)
        finally:
            conn.close()


def sse_data(lines: Iterable[str]) -> list[Any]:
    """The JSON payloads of an SSE stream's ``data:`` lines (``[DONE]`` skipped)."""
    out = []
    for line in lines:
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload and payload != "[DONE]":
                out.append(json.loads(payload))
    return out


__all__ = ["FaultProxy", "MODES", "RecordedRequest", "sse_data"]
