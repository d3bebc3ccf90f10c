"""Documents as the editor sees them: pygls' document store with LSP's own line breaks, and the
conversions between LSP positions and URIs and the completion path's offsets and paths.

pygls' TextDocument splits lines with ``str.splitlines``, which also breaks at form feed,
vertical tab, \\x1c-\\x1e, NEL and U+2028/2029. LSP lines end only at \\r\\n, \\n and \\r, so a
file with a ^L page break (CPython's own sources have them) had later edits applied to the
wrong line. Everything in pygls' TextDocument goes through ``lines``; overriding it fixes edits,
offsets and positions alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.workspace import TextDocument, Workspace

from .completion.pipeline import CompletionRequest

# A line with its terminator, or a last line without one.
_LSP_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


class LspTextDocument(TextDocument):
    @property
    def lines(self) -> Sequence[str]:
        return tuple(_LSP_LINE.findall(self.source))


class LspWorkspace(Workspace):
    """A Workspace whose documents are :class:`LspTextDocument`."""

    def _create_text_document(self, doc_uri: str, source: str | None = None,
                              version: int | None = None, language_id: str | None = None
                              ) -> TextDocument:
        return LspTextDocument(doc_uri, source=source, version=version, language_id=language_id,
                               sync_kind=self._sync_kind, position_codec=self._position_codec)


def use_lsp_lines(workspace: Any) -> None:
    """Make pygls' workspace (created during initialize) create LSP-line documents."""
    if isinstance(workspace, Workspace) and not isinstance(workspace, LspWorkspace):
        workspace.__class__ = LspWorkspace


def uri_path(uri: str) -> Path | None:
    """The file a ``file:`` URI names; None for other schemes."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def relative_to_roots(path: Path, roots: Sequence[Path]) -> Path | None:
    """``path`` relative to the first workspace root that holds it (symlinks resolved)."""
    for root in roots:
        try:
            return path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
    return None


def request_at(workspace: Workspace, roots: Sequence[Path], uri: str,
               position: types.Position) -> CompletionRequest | None:
    """The completion request for ``position`` in an open ``file:`` document inside the
    workspace roots, or None (unknown document, other scheme, outside the roots, bad
    position). Positions count in the client's units; past the end of a line means its end."""
    doc = workspace.text_documents.get(uri)
    path = uri_path(uri)
    if doc is None or path is None:
        return None
    rel = relative_to_roots(path, roots)
    if roots and rel is None:
        return None
    lines = doc.lines
    if position.line < 0 or position.character < 0:
        return None
    if position.line > len(lines) or (position.line == len(lines) and position.character):
        return None
    if position.line == len(lines):
        offset = len(doc.source)
    else:
        text = lines[position.line].rstrip("\r\n")
        pos = doc.position_codec.position_from_client_units(lines, position)
        offset = sum(len(x) for x in lines[:position.line]) + min(pos.character, len(text))
    return CompletionRequest(uri=uri, text=doc.source, offset=offset,
                             language=doc.language_id or "",
                             path=rel.as_posix() if rel is not None else path.name,
                             file_path=str(path))


def is_stale(workspace: Workspace, req: CompletionRequest) -> bool:
    """The document no longer reads as it did when the request was made."""
    doc = workspace.text_documents.get(req.uri)
    return doc is None or doc.source != req.text
