"""The context host: the language server's repository context, the workspace index over the
editor's roots.

No LSP types. Owns the index's life (built in the background when the roots are known, rebuilt
when the context settings change, stopped at shutdown), feeds it the editor's open buffers, and
is the context source the completion path asks (:class:`~lsp_server.completion.completer.
ContextSource`): with no index it answers an empty selection.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .context import ContextSelection, WorkspaceIndex
from .prompt.tokens import Tokenizer
from .settings import Settings


class WorkspaceContext:
    """The current :class:`WorkspaceIndex` for the roots, or none."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.roots: list[Path] = []
        self.index: WorkspaceIndex | None = None
        self.started = False
        """start() ran: later context-setting changes rebuild."""

    def start(self, buffers: Iterable[tuple[Path, str]] = ()) -> None:
        """(Re)build the index in the background with the current settings; ``buffers`` are
        the open documents, whose text wins over the disk."""
        self.started = True
        self.stop()
        config = self.settings.config.context
        if not self.roots or not config.enabled:
            return
        self.index = WorkspaceIndex(self.roots, config)
        for path, text in buffers:
            self.index.update_buffer(path, text)
        self.index.start()

    def stop(self) -> None:
        if self.index is not None:
            self.index.stop()
            self.index = None

    def buffer_changed(self, path: Path | None, text: str | None) -> None:
        """An open buffer now reads ``text``; None: it was closed (the disk counts again)."""
        if self.index is None or path is None:
            return
        if text is None:
            self.index.close_buffer(path)
        else:
            self.index.update_buffer(path, text)

    def select_context(self, path: str | os.PathLike[str], prefix: str, suffix: str,
                       tokenizer: Tokenizer, budget_tokens: int) -> ContextSelection:
        index = self.index
        if index is None:
            return ContextSelection([], [], budget_tokens, 0, status="off")
        return index.select_context(path, prefix, suffix, tokenizer, budget_tokens)

    def version(self) -> tuple[int, str, int]:
        """Changes when what context selection sees may have changed: another index, the
        index's state (it became ready), or a batch of file changes applied."""
        index = self.index
        return (0, "off", 0) if index is None else (id(index), index.state, index.changes)

    def status(self) -> dict[str, object]:
        if self.index is None:
            return {"state": "off"}
        s = self.index.stats()
        return {"state": s.state, "files": s.files, "source_files": s.source_files,
                "edges": s.edges, "watching": s.watching}
