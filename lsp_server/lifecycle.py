"""The model's life in the server: load in the background, report progress, reload on change.

No LSP types: the server passes callbacks for progress and messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Callable

from .completion.backend import CompletionBackend, open_backend
from .config import Config
from .engine.types import EngineError
from .errors import CodefillError

Notify = Callable[[str, str], None]  # (state, detail)


class ModelHost:
    """Owns the current :class:`ModelSession`; states: idle, loading, ready, failed."""

    def __init__(self, config: Config, notify: Notify | None = None,
                 on_health: Notify | None = None) -> None:
        self.config = config
        self.session: CompletionBackend | None = None
        self._on_health = on_health
        self.state = "idle"
        self.error = ""
        self._notify = notify or (lambda state, detail: None)
        self._task: asyncio.Task | None = None
        self._loaded_engine: object | None = None

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
        remote = bool(self.config.remote.url.strip())
        old, self.session = self.session, None
        self._set("loading", "connecting to the remote engine" if remote else "resolving the model")
        if old is not None:
            await asyncio.to_thread(old.close)
        try:
            session = await asyncio.to_thread(
                open_backend, self.config, progress=lambda msg: self._notify("loading", msg),
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
        self._loaded_engine = (dataclasses.replace(self.config.engine),
                               dataclasses.replace(self.config.remote))
        self._set("ready", session.label)

    def needs_reload(self) -> bool:
        """Engine settings or the template changed since the model was loaded."""
        if self.session is None:
            return self.state != "loading"
        return (self._loaded_engine != (self.config.engine, self.config.remote)
                or self.session.config.prompt.template != self.config.prompt.template)

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
