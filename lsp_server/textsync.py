"""pygls' document store with LSP's own line breaks.

pygls' TextDocument splits lines with ``str.splitlines``, which also breaks at form feed,
vertical tab, \\x1c-\\x1e, NEL and U+2028/2029. LSP lines end only at \\r\\n, \\n and \\r, so a
file with a ^L page break (CPython's own sources have them) had later edits applied to the
wrong line. Everything in pygls' TextDocument goes through ``lines``; overriding it fixes edits,
offsets and positions alike.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from pygls.workspace import TextDocument, Workspace

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
