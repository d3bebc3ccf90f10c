"""The server process's lives: the model (load in the background, report progress, reload when
the settings it was loaded with change) and the editor that started us (exit when it dies).

No LSP types: the server passes callbacks for progress and messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import Callable

from .completion.backend import CompletionBackend
from .completion.factory import open_backend
from .config import Config
from .engine.types import EngineError
from .errors import CodefillError
from .settings import Settings

log = logging.getLogger("codefill.server")

Notify = Callable[[str, str], None]  # (state, detail)


class ModelHost:
    """Owns the current :class:`ModelSession`; states: idle, loading, ready, failed."""

    def __init__(self, settings: Settings | Config, notify: Notify | None = None,
                 on_health: Notify | None = None) -> None:
        self.settings = Settings.of(settings)
        self.session: CompletionBackend | None = None
        self._on_health = on_health
        self.state = "idle"
        self.error = ""
        self._notify = notify or (lambda state, detail: None)
        self._task: asyncio.Task | None = None
        self._loaded_with: tuple[object, ...] | None = None

    @property
    def config(self) -> Config:
        return self.settings.config

    @staticmethod
    def _load_settings(config: Config) -> tuple[object, ...]:
        """The settings a loaded backend depends on: changing any of them means a reload."""
        return (dataclasses.replace(config.engine), dataclasses.replace(config.remote),
                config.prompt.template)

    @property
    def ready(self) -> CompletionBackend | None:
        return self.session if self.state == "ready" else None

    def _set(self, state: str, detail: str = "") -> None:
        self.state = state
        self._notify(state, detail)

    def start(self) -> asyncio.Task:
        """Load (or reload) the model for the current config in the background."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._load())
        return self._task

    async def _load(self) -> None:
        # "loading" before the old backend closes (which can take a while): the status must
        # never pair the old "ready" with the new settings.
        self.error = ""
        loading_with = self._load_settings(self.config)
        remote = bool(self.config.remote.url.strip())
        old, self.session = self.session, None
        self._set("loading", "connecting to the remote engine" if remote else "resolving the model")
        if old is not None:
            await asyncio.to_thread(old.close)
        try:
            session = await asyncio.to_thread(
                open_backend, self.settings, progress=lambda msg: self._notify("loading", msg),
                on_health=self._on_health)
            self.session = session
            self._set("loading", f"{'probing' if remote else 'loading'} {session.label}")
            await asyncio.to_thread(session.wait_ready)
        except (CodefillError, EngineError) as exc:
            self.error = str(exc)
            self._set("failed", self.error)
            return
        except Exception as exc:  # anything else is still a failed load, not a dead server
            self.error = f"model load failed: {exc}"
            self._set("failed", self.error)
            return
        self._loaded_with = loading_with
        self._set("ready", session.label)
        for warning in session.warnings:
            self._notify("warning", warning)
        if self.needs_reload():
            # The settings changed while loading (the client's answer came in meanwhile).
            self.start()

    def why_unavailable(self) -> str:
        """Why there is no model to complete with, in words for the user."""
        if self.state == "failed":
            return f"the model failed to load: {self.error}"
        return f"the model is not loaded yet ({self.state})"

    def needs_reload(self) -> bool:
        """The engine, remote or template settings changed since the model was loaded (the
        snapshot taken when loading began, never the live tree every component shares), or
        loading again would give the candidates KV cells the engine lacks (more candidates or
        longer suggestions than at load: without a reload every prompt gives up that room)."""
        if self.session is None:
            return self.state != "loading"
        return (self._loaded_with != self._load_settings(self.config)
                or self.session.needs_more_cells())

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.session is not None:
            await asyncio.to_thread(self.session.close)
            self.session = None
        self.state = "idle"

    def status(self) -> dict[str, object]:
        s = self.session
        out: dict[str, object] = {"state": self.state, "error": self.error}
        if s is not None:
            out.update(s.status())
        else:
            out.update({
                "backend": "remote" if self.config.remote.url.strip() else "local",
                "model": self.config.remote.url or self.config.engine.model or "embedded default",
                "architecture": None, "template": None, "template_reason": None,
                "context_size": None, "engine": None})
        return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_parent(pid: int | None) -> asyncio.Task | None:
    """Exit when the editor process that started us dies (LSP initialize ``processId``)."""
    if not pid or pid == os.getpid():
        return None

    async def watch() -> None:
        while True:
            await asyncio.sleep(1.0)
            if not pid_alive(pid):
                log.info("parent process %s is gone; exiting", pid)
                os._exit(0)

    return asyncio.get_running_loop().create_task(watch())
