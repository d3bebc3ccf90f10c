"""The one holder of the current configuration.

Every component (the model host, the backend, the completion path, the workspace context) keeps
a reference to the same :class:`Settings` and reads ``settings.config`` when it needs a value,
so a settings change reaches all of them at once and no component holds a stale copy. What was
*loaded* under which settings (the model, the index) is remembered by the component that loaded
it, which compares that snapshot with the current tree to decide on a reload.

No LSP types: the server validates untrusted tables with :func:`lsp_server.config.load_config`
and hands the result to :meth:`Settings.replace`.
"""

from __future__ import annotations

from typing import Any, Mapping

from .config import Config, load_config


class Settings:
    """Holds the current :class:`~lsp_server.config.Config`; replaced whole, never copied."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config if config is not None else Config()

    @property
    def config(self) -> Config:
        return self._config

    def update(self, data: Mapping[str, Any] | None) -> tuple[Config, list[str]]:
        """Validate an untrusted settings table and make it current; invalid values are
        replaced by their defaults and reported (one message each). Returns the previous
        config (to compare with) and the messages."""
        old = self._config
        self._config, problems = load_config(data)
        return old, problems

    @staticmethod
    def of(value: "Config | Settings | None") -> "Settings":
        """A holder for ``value``: the holder itself, or a new one around a plain Config (the
        CLI and the benchmarks configure once and never change)."""
        return value if isinstance(value, Settings) else Settings(value)


def section(data: Any, name: str = "codefill") -> Any:
    """The ``codefill`` table of a settings payload that may or may not wrap it in its section
    name (clients differ: initializationOptions usually do not, didChangeConfiguration does)."""
    if isinstance(data, Mapping) and isinstance(data.get(name), Mapping):
        return data[name]
    return data
