"""JSON-RPC and transport fixes around pygls: what a careless or hostile client cannot do.

* Requests whose params do not validate get an InvalidParams reply (pygls drops them, so the
  client would wait forever); a malformed reply to a server → client request fails the request
  instead of leaving it unanswered.
* Finished notification handlers are forgotten (pygls keeps one future per notification).
* Requests after ``shutdown`` get InvalidRequest, as the spec asks.
* Bodies above ``MAX_CONTENT_LENGTH`` are read and thrown away instead of parsed, on stdin
  (:class:`CappedStdin`) and on TCP (:class:`CappedStreamReader`) alike.
* :func:`plain` turns the namedtuples pygls makes of untyped params back into dicts and lists.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, BinaryIO, Callable, Generator

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger("codefill.server")

# JSON-RPC bodies above this are read and thrown away instead of parsed (a bad client must not
# make us allocate gigabytes).
MAX_CONTENT_LENGTH = int(os.environ.get("CODEFILL_MAX_MESSAGE_BYTES", 64 * 1024 * 1024))


class CodefillProtocol(LanguageServerProtocol):
    """pygls' protocol, plus an error reply to requests whose params do not validate."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                self._send_response(data["id"], error=exc.to_response_error())
            elif isinstance(data, dict) and "id" in data:
                # A malformed reply to one of our requests (workspace/configuration answered
                # with null, say): pygls drops it, so whoever awaits it would wait forever.
                future = self._request_futures.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_exception(exc)
                    exc.reported_by_caller = True  # type: ignore[attr-defined] # logged there
            raise

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._finished_notifications: list[Any] = []  # before super(): it runs handlers
        super().__init__(*args, **kwargs)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any,
                         args: tuple[Any, ...] | None = None,
                         kwargs: dict[str, Any] | None = None) -> None:
        self._forget_finished()
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        # pygls 2.1 files the future of every notification handled by a coroutine or generator
        # (didOpen, didChange, ...) in _request_futures under a fresh uuid and never removes it
        # (only responses do): ~0.6 KB per notification, unbounded (found by the 10k soak).
        # Forgotten at the next message, not in the callback: cancel() runs callbacks at once,
        # and pygls' shutdown cancels while iterating over that dict.
        if callback == self._check_handler_result:  # how pygls runs notifications
            future = self._request_futures.get(msg_id)
            if future is not None:
                future.add_done_callback(
                    lambda _f: self._finished_notifications.append(msg_id))

    def _forget_finished(self) -> None:
        while self._finished_notifications:
            self._request_futures.pop(self._finished_notifications.pop(), None)

    @property
    def pending_handlers(self) -> int:
        """Requests and notifications whose handlers have not finished."""
        self._forget_finished()
        return len(self._request_futures)

    def handle_message(self, message: Any) -> None:
        # The spec: requests after `shutdown` error with InvalidRequest (pygls drops them).
        if (self._shutdown and getattr(message, "method", types.EXIT) != types.EXIT
                and getattr(message, "id", None) is not None):
            self._send_response(message.id, error=JsonRpcInvalidRequest(
                "the server is shutting down").to_response_error())
            return
        super().handle_message(message)


# What pygls gets instead of a skipped body: a "$/" notification nobody handles, which the spec
# lets servers ignore silently.
SKIPPED_MESSAGE = b'{"jsonrpc": "2.0", "method": "$/codefill/skippedOversizedMessage"}'
_DISCARD_CHUNK = 1 << 20

# Yields how many bytes to read next and is sent what was read; returns the body for pygls.
BodyReading = Generator[int, bytes, bytes]


def _discard_body(n: int) -> BodyReading:
    """Read an oversized body of ``n`` bytes in chunks and throw it away, so that the stream
    stays in sync; b"" (end of stream) if it ends first. One loop for both transports: the
    drivers below do the reading, blocking or awaited."""
    log.error("message of %d bytes exceeds the %d byte limit; skipped", n, MAX_CONTENT_LENGTH)
    left = n
    while left > 0:
        chunk = yield min(left, _DISCARD_CHUNK)
        if not chunk:
            return b""
        left -= len(chunk)
    return SKIPPED_MESSAGE


def _drive(reading: BodyReading, read: Callable[[int], bytes]) -> bytes:
    try:
        size = next(reading)
        while True:
            size = reading.send(read(size))
    except StopIteration as stop:
        return stop.value


async def _drive_async(reading: BodyReading, read: Callable[[int], Any]) -> bytes:
    try:
        size = next(reading)
        while True:
            size = reading.send(await read(size))
    except StopIteration as stop:
        return stop.value


class CappedStdin:
    """stdin for pygls that refuses to read absurd Content-Length bodies into memory."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def readline(self) -> bytes:
        return self.raw.readline()

    def read(self, n: int) -> bytes:
        if n <= MAX_CONTENT_LENGTH:
            return self.raw.read(n)
        return _drive(_discard_body(n), self.raw.read)


class CappedStreamReader:
    """An asyncio StreamReader (a TCP connection) for pygls' ``run_async``, with the same cap as
    :class:`CappedStdin`. A header line over the StreamReader's limit (64 KiB) is dropped
    rather than ending the connection with an exception; end of stream reads as b"", which
    ends pygls' loop."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    async def readline(self) -> bytes:
        try:
            return await self.reader.readline()
        except ValueError:  # the line overran the limit; asyncio has dropped what it buffered
            log.error("header line over the stream's limit; skipped")
            return b"X-Codefill-Skipped: header line too long\r\n"  # ignored by pygls

    async def readexactly(self, n: int) -> bytes:
        if n <= MAX_CONTENT_LENGTH:
            try:
                return await self.reader.readexactly(n)
            except asyncio.IncompleteReadError:
                return b""
        return await _drive_async(_discard_body(n), self.reader.read)


def plain(value: Any) -> Any:
    """JSON-like data as dicts and lists: pygls turns the params of custom methods into
    namedtuples, and LSPAny values may come either way."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
