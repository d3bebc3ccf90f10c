"""A small streaming HTTP client for remote engines (stdlib ``http.client``, no dependency).

Why not a library: the engines need exactly one thing — POST a JSON body and read a
server-sent-event stream line by line — plus two controls libraries make awkward: closing the
socket from another thread to cancel a blocked read at once, and never following redirects (a
redirect could carry the prompt, i.e. the user's code, and the API key to another host).

Failures become :class:`RemoteError` with a message for the user and whether retrying may help.
The API key is sent as a header and never appears in messages or logs.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from ...config import RemoteConfig
from ..types import EngineError

# Statuses worth another try: the server is busy, starting or behind a restarting proxy.
RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})
# Body bytes kept from an error response for the message.
ERROR_BODY_LIMIT = 2048
# Longest SSE line accepted; a stream of garbage must not grow memory without bound.
MAX_LINE = 1 << 20


class RemoteError(EngineError):
    """A remote engine failed; ``str()`` is the message for the editor."""

    def __init__(self, message: str, *, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Endpoint:
    """A validated base URL."""

    scheme: str
    host: str
    port: int
    base_path: str

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> "Endpoint":
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"remote.url {url!r} is not an http:// or https:// URL "
                              "(example: http://gpu-box:8080)")
        if parts.username or parts.password:
            raise RemoteError("remote.url must not carry credentials; put the API key in the "
                              "environment variable named by remote.api_key_env")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise RemoteError(f"remote.url {url!r} has an invalid port") from None
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _sock_of(conn: http.client.HTTPConnection) -> socket.socket | None:
    return conn.sock  # type: ignore[no-any-return]


def _abort(conn: http.client.HTTPConnection) -> None:
    sock = _sock_of(conn)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Response:
    """An open streaming response; :meth:`close` may be called from any thread."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 read_timeout: float) -> None:
        self._conn = conn
        self._resp = resp
        self._read_timeout = read_timeout
        self._closed = threading.Event()
        self.content_type = resp.getheader("Content-Type", "") or ""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Close the connection; a read blocked in another thread returns at once."""
        if self._closed.is_set():
            return
        self._closed.set()
        sock = _sock_of(self._conn)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._conn.close()
        except Exception:
            pass

    def _readline(self) -> bytes:
        if self._resp.isclosed():  # http.client closes a response at the end of its body
            return b""
        try:
            line = self._resp.readline(MAX_LINE + 1)
        except Exception as exc:
            # Closed from another thread (a cancel): http.client then fails in odd ways
            # (ValueError, AttributeError on its cleared file object); that is the end.
            if self._closed.is_set():
                return b""
            if isinstance(exc, (socket.timeout, TimeoutError)):
                raise RemoteError(f"the remote engine sent nothing for {self._read_timeout:g} s "
                                  "(remote.read_timeout_ms)") from None
            raise RemoteError(f"the connection to the remote engine broke mid-answer: "
                              f"{exc or type(exc).__name__}") from None
        if len(line) > MAX_LINE:
            raise RemoteError("the remote engine sent a line over 1 MiB; not an event stream")
        return line

    def events(self) -> Iterator[str]:
        """The ``data`` payloads of a server-sent-event stream, in order.

        A non-streaming JSON body (``Content-Type: application/json``) yields once. The end of
        the body ends the iteration; whether the answer was complete is the caller's call.
        """
        if "text/event-stream" not in self.content_type:
            body = self._read_body()
            if body.strip():
                yield body
            return
        data: list[str] = []
        while not self._closed.is_set():
            raw = self._readline()
            if not raw:  # end of stream
                break
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line:  # an empty line dispatches the event
                if data:
                    yield "\n".join(data)
                    data = []
                continue
            if line.startswith(":"):  # comment / keep-alive
                continue
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value[1:] if value.startswith(" ") else value)
            elif field == "error":  # llama-server reports mid-stream errors this way
                data.append(json.dumps({"error": value.strip()}))
        if data and not self._closed.is_set():
            yield "\n".join(data)

    def _read_body(self) -> str:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._readline()
            if not line:
                break
            size += len(line)
            if size > 64 * MAX_LINE:
                raise RemoteError("the remote engine's answer is over 64 MiB")
            chunks.append(line)
        return b"".join(chunks).decode("utf-8", errors="replace")


class HttpClient:
    """POSTs JSON to one remote engine and opens its streaming answer."""

    def __init__(self, cfg: RemoteConfig) -> None:
        self.cfg = cfg
        self.endpoint = Endpoint.parse(cfg.url)
        self._ssl: ssl.SSLContext | None = None
        if self.endpoint.scheme == "https":
            ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
            if not cfg.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx

    @property
    def api_key(self) -> str:
        name = self.cfg.api_key_env
        return os.environ.get(name, "") if name else ""

    def _connect(self) -> http.client.HTTPConnection:
        ep = self.endpoint
        timeout = self.cfg.connect_timeout_ms / 1000
        if self._ssl is not None:
            return http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any | None = None, *,
                on_connection: Callable[[Callable[[], None]], None] | None = None) -> Response:
        """Send one request; a response that is not 2xx raises :class:`RemoteError`.

        ``on_connection`` receives a function that aborts the request from another thread
        while it waits for the answer's headers (a slow server must not pin a cancelled
        request for the whole read timeout).
        """
        ep = self.endpoint
        headers = {"Accept": "text/event-stream, application/json",
                   "User-Agent": "codefill"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        conn = self._connect()
        where = f"{ep.origin}{ep.base_path}{path}"
        if on_connection is not None:
            on_connection(lambda: _abort(conn))
        try:
            conn.request(method, ep.base_path + path, body=payload, headers=headers)
            sock = _sock_of(conn)
            if sock is not None:  # from here on, a silence limit instead of the connect one
                sock.settimeout(self.cfg.read_timeout_ms / 1000)
            resp = conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise RemoteError(f"TLS certificate of {ep.host} not trusted ({exc.verify_message}); "
                              "set remote.ca_file to its CA, or remote.verify_tls=false for a "
                              "test server") from None
        except (ConnectionRefusedError, socket.gaierror) as exc:
            conn.close()
            what = "connection refused" if isinstance(exc, ConnectionRefusedError) else \
                f"unknown host ({exc.strerror or exc})"
            raise RemoteError(f"cannot reach the remote engine at {ep.origin}: {what}",
                              retryable=True) from None
        except (socket.timeout, TimeoutError):
            conn.close()
            raise RemoteError(f"the remote engine at {ep.origin} did not answer in time "
                              "(remote.connect_timeout_ms / read_timeout_ms)",
                              retryable=True) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RemoteError(f"the connection to {ep.origin} failed: "
                              f"{exc or type(exc).__name__}", retryable=True) from None
        if 200 <= resp.status < 300:
            return Response(conn, resp, self.cfg.read_timeout_ms / 1000)
        try:
            raise self._status_error(resp, where)
        finally:
            conn.close()

    def _status_error(self, resp: http.client.HTTPResponse, where: str) -> RemoteError:
        status = resp.status
        if 300 <= status < 400:
            location = resp.getheader("Location", "") or "?"
            target = urlsplit(location)
            other = target.hostname not in (None, self.endpoint.host)
            return RemoteError(
                f"the remote engine redirected {where} to "
                f"{'another host, ' if other else ''}{location}; codefill does not follow "
                "redirects (they could send your code and API key elsewhere) — set remote.url "
                "to the final address")
        try:
            body = resp.read(ERROR_BODY_LIMIT).decode("utf-8", errors="replace")
        except Exception:
            body = ""
        detail = _error_detail(body)
        if status in (401, 403):
            key = self.cfg.api_key_env
            hint = (f"check the API key in ${key}" if self.api_key else
                    f"set the API key in the environment variable ${key}" if key else
                    "set remote.api_key_env to the variable holding the API key")
            return RemoteError(f"the remote engine refused the request ({status} "
                               f"{resp.reason}): {hint}")
        retry_after = None
        header = resp.getheader("Retry-After")
        if header:
            try:
                retry_after = max(0.0, float(header))
            except ValueError:
                retry_after = None
        return RemoteError(f"the remote engine answered {status} {resp.reason} for {where}"
                           + (f": {detail}" if detail else ""),
                           retryable=status in RETRYABLE_STATUS, retry_after=retry_after)


def _error_detail(body: str) -> str:
    """The message of a JSON error body ({"error": {"message": …}} or {"error": "…"}), else
    the body's first line, shortened."""
    text = body.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:200] if text else ""
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("detail", obj))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(obj)[:200]
