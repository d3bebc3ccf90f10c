"""What the server tells the user through the client: messages, log lines and the model's
loading progress. Every call tolerates a client that is gone or not yet there."""

from __future__ import annotations

import asyncio
import logging
import uuid
from lsprotocol import types
from pygls.lsp.server import LanguageServer

from .settings import Settings

log = logging.getLogger("codefill.server")

LOG_LEVELS = {"error": types.MessageType.Error, "warning": types.MessageType.Warning,
              "info": types.MessageType.Info, "debug": types.MessageType.Log}


class ClientNotifier:
    """``window/showMessage``, ``window/logMessage`` (filtered by ``completion.log_level``) and
    ``$/progress`` for the model load."""

    def __init__(self, ls: LanguageServer, settings: Settings) -> None:
        self.ls = ls
        self.settings = settings
        self._progress_token: str | None = None
        self._last_state: tuple[str, str] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def message(self, kind: types.MessageType, text: str) -> None:
        try:
            self.ls.window_show_message(types.ShowMessageParams(type=kind, message=text))
        except Exception:  # no client yet / connection gone
            log.warning(text)

    def log(self, level: str, text: str) -> None:
        order = list(LOG_LEVELS)
        if order.index(level) > order.index(self.settings.config.completion.log_level):
            return
        try:
            self.ls.window_log_message(types.LogMessageParams(type=LOG_LEVELS[level],
                                                              message=text))
        except Exception:
            log.debug(text)

    def protocol_error(self, error: Exception, source: object) -> None:
        """Protocol-level errors (bad JSON, bad params) go to the log, not to a popup: the
        request already got its error reply, and the user can do nothing about a client bug."""
        if getattr(error, "reported_by_caller", False):
            return
        log.warning("protocol error (%s): %s", getattr(source, "__name__", source), error)
        self.log("warning", f"codefill: protocol error: {error}")

    def from_thread(self, kind: types.MessageType, text: str) -> None:
        """:meth:`message` from another thread (engine threads report remote health)."""
        loop = self.loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self.message, kind, text)
        else:
            self.message(kind, text)

    async def begin_progress(self, title: str, message: str, timeout: float = 5.0) -> None:
        """Open a progress report where the client supports one (best effort; nothing waits on
        it: a client that never answers the create request gets no progress, and a load that
        finished meanwhile ends the report at once)."""
        self.loop = asyncio.get_running_loop()
        caps = self.ls.client_capabilities.window
        if caps is None or not caps.work_done_progress:
            return
        token = f"codefill-load-{uuid.uuid4().hex[:8]}"
        try:
            await asyncio.wait_for(self.ls.work_done_progress.create_async(token), timeout)
            self.ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                title=title, message=message, cancellable=False))
            self._progress_token = token
        except Exception as exc:
            log.info("window/workDoneProgress/create failed: %s", exc or type(exc).__name__)
            self._progress_token = None
            return
        if self._last_state is not None and self._last_state[0] in ("ready", "failed"):
            self._report(*self._last_state)

    def model_state(self, state: str, detail: str) -> None:
        """The model host's state changes: logged, shown as progress, failures as an error."""
        self.log("info", f"model {state}: {detail}")
        if state != "warning":
            self._last_state = (state, detail)
            self._report(state, detail)
        if state == "failed":
            self.message(types.MessageType.Error, f"codefill: {detail}")
        elif state == "warning":
            self.message(types.MessageType.Warning, f"codefill: {detail}")

    def _report(self, state: str, detail: str) -> None:
        token = self._progress_token
        if token is not None:
            try:
                if state == "loading":
                    self.ls.work_done_progress.report(token, types.WorkDoneProgressReport(
                        message=detail))
                elif state in ("ready", "failed"):
                    self.ls.work_done_progress.end(token, types.WorkDoneProgressEnd(
                        message=f"{state}: {detail}"))
                    self._progress_token = None
            except Exception:
                pass

    def remote_health(self, state: str, detail: str) -> None:
        """A remote engine stopped or started answering (called from engine threads)."""
        if state == "failing":
            text = f"codefill: remote engine failing: {detail}"
            if self.settings.config.remote.fallback:
                text += " (completing with the local model meanwhile)"
            self.from_thread(types.MessageType.Warning, text)
        else:
            self.from_thread(types.MessageType.Info, f"codefill: {detail}")

