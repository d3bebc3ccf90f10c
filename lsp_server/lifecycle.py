"""The model's life in the server: load in the background, report progress, reload on change.

No LSP types: the server passes callbacks for progress and messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Callable

from .completion.session import ModelSession
from .config import Config
from .errors import CodefillError

Notify = Callable[[str, str], None]  # (state, detail)


class ModelHost:
    """Owns the current :class:`ModelSession`; states: idle, loading, ready, failed."""

    def __init__(self, config: Config, notify: Notify | None = None) -> None:
        self.config = config
        self.session: ModelSession | None = None
        self.state = "idle"
        self.error = ""
        self._notify = notify or (lambda state, detail: None)
        self._task: asyncio.Task | None = None
        self._loaded_engine: object | None = None

    @property
    def ready(self) -> ModelSession | None:
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
        old, self.session = self.session, None
        if old is not None:
            await asyncio.to_thread(old.close)
        self.error = ""
        self._set("loading", "resolving the model")
        try:
            session = await asyncio.to_thread(
                ModelSession, self.config, progress=lambda msg: self._notify("loading", msg))
            self.session = session
            self._set("loading", f"loading {session.model_path.name}")
            await asyncio.to_thread(session.engine.wait_ready)
        except CodefillError as exc:
            self.error = str(exc)
            self._set("failed", self.error)
            return
        except Exception as exc:  # anything else is still a failed load, not a dead server
            self.error = f"model load failed: {exc}"
            self._set("failed", self.error)
            return
        self._loaded_engine = dataclasses.replace(self.config.engine)
        self._set("ready", f"{session.model_path.name} ({session.template.name})")

    def needs_reload(self) -> bool:
        """Engine settings or the template changed since the model was loaded."""
        if self.session is None:
            return self.state != "loading"
        return (self._loaded_engine != self.config.engine
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
        return {
            "state": self.state,
            "error": self.error,
            "model": str(s.model_path) if s else self.config.engine.model or "embedded default",
            "architecture": s.info.architecture if s else None,
            "template": s.template.name if s else None,
            "template_reason": s.detection.reason if s else None,
            "context_size": s.engine.n_ctx if s else None,
            "engine": dict(vars(s.engine.counters)) if s else None,
        }
