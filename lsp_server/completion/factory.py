"""Which backend the settings ask for: a remote engine when ``remote.url`` is set, else the local
llama.cpp engine. Kept apart from the interface so that the interface imports no backend."""

from __future__ import annotations

from typing import Callable

from ..config import Config
from ..models.resolve import Progress
from ..settings import Settings
from .backend import CompletionBackend
from .remote_session import RemoteSession
from .session import ModelSession


def open_backend(settings: Settings | Config, *, progress: Progress | None = None,
                 on_health: Callable[[str, str], None] | None = None) -> CompletionBackend:
    """The backend the settings ask for (model resolution and loading start here; see
    ``wait_ready``). ``on_health`` hears a remote engine going from answering to failing and
    back."""
    settings = Settings.of(settings)
    if settings.config.remote.url.strip():
        return RemoteSession(settings, progress=progress, on_health=on_health)
    return ModelSession(settings, progress=progress)
