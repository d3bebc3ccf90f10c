"""A remote generation engine: the same token streams as the local engine, over HTTP.

Each request runs on its own short-lived thread (the remote server queues or batches them);
cancelling the stream closes the HTTP connection, so the server stops generating too. Failures
before any text arrived are retried with exponential backoff when retrying can help (connection
refused, 429, 502–504) and can fall back to the local engine; the engine's health (ok / failing
and the last error) is kept for the editor's status.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ...config import RemoteConfig
from ..types import EngineCounters, StopReason, TokenEvent, TokenStream
from .apis import RemoteRequest, get_api
from .http import HttpClient, RemoteError

log = logging.getLogger("codefill.remote")

# A retry never waits longer than this, whatever Retry-After says: the user is typing.
MAX_RETRY_DELAY_S = 5.0

Fallback = Callable[[], TokenStream]
HealthListener = Callable[[str, str], None]  # (state "ok" | "failing", detail)


@dataclass
class RemoteHealth:
    """How the remote engine has been doing."""

    state: str = "unknown"
    """'unknown' (nothing sent yet), 'ok' or 'failing'."""
    last_error: str = ""
    consecutive_failures: int = 0
    errors: int = 0
    retries: int = 0
    fallbacks: int = 0


class RemoteEngine:
    """Generation on a llama-server or OpenAI-compatible server."""

    def __init__(self, cfg: RemoteConfig, on_health: HealthListener | None = None) -> None:
        self.cfg = cfg
        self.api = get_api(cfg.api)
        self.http = HttpClient(cfg)  # validates the URL
        self.counters = EngineCounters()
        self.health = RemoteHealth()
        self.server_n_ctx: int | None = None
        self._on_health = on_health
        self._lock = threading.Lock()
        self._active: set[TokenStream] = set()
        self._closed = False
        self._probed = False
        self._probing = False

    @property
    def url(self) -> str:
        return self.http.endpoint.origin + self.http.endpoint.base_path

    # --- health --------------------------------------------------------------------------
    def _ok(self) -> None:
        with self._lock:
            was = self.health.state
            self.health.state = "ok"
            self.health.consecutive_failures = 0
            reprobe = not self._probed and not self._probing
            self._probing = self._probing or reprobe
        if reprobe:  # the server was down at start: learn its context size now, off-thread
            threading.Thread(target=self._quiet_probe, name="codefill-remote-probe",
                             daemon=True).start()
        if was != "ok" and self._on_health:
            self._on_health("ok", f"remote engine at {self.url} is answering")

    def _quiet_probe(self) -> None:
        try:
            self.probe()
        except RemoteError:
            pass
        finally:
            self._probing = False

    def _failed(self, why: str) -> None:
        with self._lock:
            was = self.health.state
            self.health.state = "failing"
            self.health.last_error = why
            self.health.errors += 1
            self.health.consecutive_failures += 1
        if was != "failing" and self._on_health:
            self._on_health("failing", why)

    def probe(self) -> Any:
        """GET the API's probe path once; returns its JSON (or None) and records the server's
        context size when it reports one. Raises :class:`RemoteError`."""
        try:
            resp = self.http.request("GET", self.api.probe_path)
            try:
                body = "".join(resp.events())
            finally:
                resp.close()
        except RemoteError as exc:
            self._failed(str(exc))
            raise
        self._probed = True
        self._ok()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return None
        self.server_n_ctx = self.api.context_size(data)
        return data

    # --- generation ----------------------------------------------------------------------
    def submit(self, request: RemoteRequest,
               listener: Callable[[TokenEvent | None], None] | None = None,
               fallback: Fallback | None = None) -> TokenStream:
        """Start ``request``; tokens arrive on the returned stream (and at ``listener``).

        ``fallback`` starts a local generation when the remote one fails before any text.
        """
        stream = TokenStream(request, listener=listener)
        if self._closed:
            stream._finish(StopReason.ERROR, "engine is closed")
            return stream
        with self._lock:
            self._active.add(stream)
        threading.Thread(target=self._run, args=(stream, request, fallback),
                         name="codefill-remote", daemon=True).start()
        return stream

    def close(self) -> None:
        self._closed = True
        with self._lock:
            active = list(self._active)
        for stream in active:
            stream.cancel()

    def _run(self, stream: TokenStream, r: RemoteRequest, fallback: Fallback | None) -> None:
        self.counters.requests += 1
        try:
            self._generate(stream, r)
        except RemoteError as exc:
            self._failed(str(exc))
            if fallback is not None and not stream.stats.n_generated and not stream.cancelled:
                self.health.fallbacks += 1
                self._relay(stream, fallback())
            else:
                stream._finish(StopReason.ERROR, str(exc))
        except Exception as exc:  # a bug must end the stream, not leave the editor waiting
            log.exception("remote generation failed")
            self._failed(f"remote generation failed: {exc}")
            stream._finish(StopReason.ERROR, f"remote generation failed: {exc}")
        finally:
            with self._lock:
                self._active.discard(stream)

    def _relay(self, stream: TokenStream, inner: TokenStream) -> None:
        """Feed a fallback generation's events into ``stream``."""
        stream.on_cancel(inner.cancel)
        stream.prompt = inner.prompt
        try:
            for ev in inner:
                stream._emit(ev)
        except Exception as exc:
            stream._finish(StopReason.ERROR, f"remote engine failed and so did the local "
                                             f"fallback: {exc}")
            return
        s = inner.wait()
        for name in ("n_prompt", "n_reused", "n_evaluated", "n_generated", "t_prompt_eval",
                     "t_first_token"):
            setattr(stream.stats, name, getattr(s, name))
        stream._finish(s.stop_reason or StopReason.STOP_TOKEN)

    def _open(self, stream: TokenStream, path: str, body: dict[str, Any],
              deadline: float | None):
        """The response, after retries; None when cancelled or out of time meanwhile."""
        attempt = 0
        while True:
            if stream.cancelled:
                return None
            try:
                return self.http.request("POST", path, body, on_connection=stream.on_cancel)
            except RemoteError as exc:
                left = None if deadline is None else deadline - time.monotonic()
                if not exc.retryable or attempt >= self.cfg.retries:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else \
                    self.cfg.backoff_ms / 1000 * (2 ** attempt)
                delay = min(delay, MAX_RETRY_DELAY_S)
                if left is not None and delay >= left:
                    raise
                attempt += 1
                self.health.retries += 1
                if stream._cancel.wait(delay):
                    return None

    def _generate(self, stream: TokenStream, r: RemoteRequest) -> None:
        stats = stream.stats
        path, body = self.api.build(r)
        stream.prompt = body
        deadline = (stream.submitted + r.time_budget_ms / 1000) if r.time_budget_ms else None
        resp = self._open(stream, path, body, deadline)
        if resp is None:
            return self._end(stream, StopReason.CANCELLED if stream.cancelled
                             else StopReason.TIME_BUDGET)
        stats.t_queued = 0.0
        stream.on_cancel(resp.close)
        finished: StopReason | None = None
        events = 0
        try:
            for data in resp.events():
                if stream.cancelled:
                    break
                events += 1
                if data.strip() == "[DONE]":
                    finished = finished or StopReason.STOP_TOKEN
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    raise RemoteError("the remote engine sent malformed JSON in its answer: "
                                      f"{data[:80]!r}") from None
                chunk = self.api.parse(event)
                if events == 1:
                    self._ok()  # a well-formed answer: the server is working
                if r.max_tokens == 0:
                    # A prefill: the first event comes once the prompt is in the server's cache
                    # (llama-server may still sample a token: it is not wanted).
                    stats.t_prompt_eval = time.monotonic() - stream.submitted
                    finished = StopReason.PREFILLED
                    break
                if chunk.text:
                    stats.n_generated += 1
                    if stats.t_first_token is None:
                        stats.t_first_token = time.monotonic() - stream.submitted
                        stats.t_prompt_eval = stats.t_first_token
                    stream._emit(TokenEvent(-1, chunk.text, chunk.logprob))
                if chunk.done:
                    finished = chunk.reason or StopReason.STOP_TOKEN
                    if chunk.stats:
                        stats.n_prompt = chunk.stats.get("prompt", 0)
                        stats.n_reused = chunk.stats.get("reused", 0)
                        stats.n_evaluated = chunk.stats.get("evaluated", 0)
                        stats.n_generated = chunk.stats.get("generated") or stats.n_generated
                    break
                if stats.n_generated >= r.max_tokens:
                    finished = StopReason.MAX_TOKENS
                    break
                if deadline is not None and time.monotonic() > deadline:
                    finished = StopReason.TIME_BUDGET
                    break
        except RemoteError:
            if stream.cancelled:  # closing the response made the read fail: that's the cancel
                return self._end(stream, StopReason.CANCELLED)
            raise
        finally:
            resp.close()
        if stream.cancelled:
            return self._end(stream, StopReason.CANCELLED)
        if finished is None:
            raise RemoteError(f"the remote engine's answer stopped before its end (connection "
                              f"closed after {events} event{'s' if events != 1 else ''})")
        self._ok()
        self._end(stream, finished)

    def _end(self, stream: TokenStream, reason: StopReason) -> None:
        self.counters.add(stream.stats, reason)
        stream._finish(reason)
