"""The editors' model picker: ``codefill/models`` lists the registry, ``codefill/pullModel``
downloads one with ``$/progress`` on the request's work-done token and stops on
``$/cancelRequest`` (the partial file stays, so the next pull resumes). Both go through the same
modules as `codefill models` (lsp_server/models/); docs/protocol.md has the shapes."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer

from .errors import CodefillError
from .models import catalog
from .models.pull import PullCancelled, pull
from .models.registry import parse_reference
from .protocol import plain

#: Progress reports at most this often (a pull of 1.6 GB would otherwise send thousands).
REPORT_EVERY_S = 0.25


class PullFailed(JsonRpcException):
    """A pull that failed for a reason the user can act on: a JSON-RPC error (LSP's
    RequestFailed) whose message is the line `codefill models pull` prints."""

    CODE = -32803
    reported_by_caller = True  # logged by pull_model, not a protocol error


def list_models(ls: Any, params: Any) -> dict[str, Any]:
    return {"models": catalog.rows(), "current": ls.settings.config.engine.model}


class _Progress:
    """``$/progress`` on the client's token, from the pull's thread."""

    def __init__(self, ls: LanguageServer, token: Any, title: str) -> None:
        self.ls, self.token, self.title = ls, token, title
        self.loop = asyncio.get_running_loop()
        self._last = 0.0
        self._pct = -1

    def _send(self, value: Any) -> None:
        if self.token is not None:
            try:
                self.ls.protocol.notify(types.PROGRESS,
                                        types.ProgressParams(token=self.token, value=value))
            except Exception:  # the client is gone; the pull goes on
                pass

    def begin(self) -> None:
        self._send(types.WorkDoneProgressBegin(title=self.title, cancellable=True, percentage=0,
                                               message="connecting to the hub"))

    def update(self, done: int, total: int) -> None:
        """Called from the pull's thread."""
        now = time.monotonic()
        pct = int(done * 100 / total) if total else 0
        if pct == self._pct or (now - self._last < REPORT_EVERY_S and done < total):
            return
        self._last, self._pct = now, pct
        msg = f"{done / 1e6:.0f} of {total / 1e6:.0f} MB"
        self.loop.call_soon_threadsafe(self._send, types.WorkDoneProgressReport(
            message=msg, percentage=pct, cancellable=True))

    def say(self, text: str) -> None:
        self.loop.call_soon_threadsafe(self._send, types.WorkDoneProgressReport(message=text))

    def end(self, text: str) -> None:
        self._send(types.WorkDoneProgressEnd(message=text))


async def pull_model(ls: Any, params: Any) -> dict[str, Any]:
    p = plain(params)
    p = p if isinstance(p, dict) else {}
    name, token = p.get("name"), p.get("workDoneToken")
    if not isinstance(name, str) or not name.strip():
        raise JsonRpcInvalidParams("codefill/pullModel needs {\"name\": \"MODEL[:QUANT]\"}")
    try:
        ref = parse_reference(name)
    except CodefillError as exc:
        raise JsonRpcInvalidParams(str(exc)) from None
    progress = _Progress(ls, token, f"codefill: pulling {ref.label}")
    cancelled = threading.Event()
    progress.begin()
    ls.notify.log("info", f"codefill: pulling {ref.label} ({ref.hub.reference})")
    try:
        got = await asyncio.to_thread(pull, ref, on_progress=progress.update,
                                      cancelled=cancelled, say=progress.say)
    except asyncio.CancelledError:
        cancelled.set()  # the thread stops at its next chunk; the partial file stays
        progress.end("cancelled: the next pull resumes")
        ls.notify.log("info", f"codefill: pull of {ref.label} cancelled")
        raise
    except PullCancelled:
        progress.end("cancelled")
        raise JsonRpcRequestCancelled(f"the pull of {ref.label} was cancelled") from None
    except CodefillError as exc:
        progress.end(f"failed: {exc.problem}")
        ls.notify.log("warning", f"codefill: pull of {ref.label} failed: {exc}")
        raise PullFailed(str(exc)) from None
    progress.end(f"pulled {ref.label}")
    ls.notify.log("info", f"codefill: pulled {ref.label} to {got.path}")
    return {"name": ref.label, "path": str(got.path), "sizeBytes": got.size_bytes,
            "sha256": got.sha256, "template": ref.model.template if ref.model else ""}


MODEL_HANDLERS: tuple[tuple[str, Any, Any], ...] = (
    ("codefill/models", list_models, None),
    ("codefill/pullModel", pull_model, None),
)
