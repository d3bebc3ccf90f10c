"""Reading a source tree for training, through the daemon's own filters.

The daemon's read gate (:class:`lsp_server.context.gate.ReadGate`) decides what may enter a
prompt: built-in ignored directories, ``.gitignore`` at every level, secret names and contents,
binary extensions and NUL sniffing, size limit, symlinks out of the root. Training reads through
the same gate (its scanner for the path rules, ``read_disk`` for the content rules), so nothing
the daemon would refuse to show a model is used to train one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lsp_server.config import ContextConfig
from lsp_server.context.imports import resolver_for
from lsp_server.context.gate import ReadGate
from lsp_server.prompt.templates import TEMPLATES

# A document that spells a sentinel would teach the model that sentinel text is code (the
# SentencePiece vocabulary holds them as user-defined symbols, matched anywhere).
_SENTINEL_TEXTS: tuple[str, ...] = tuple(
    s for spellings in TEMPLATES["codegemma"].sentinels.values() for s in spellings)


@dataclass
class Corpus:
    """The source files of one repository: root-relative path → text, in path order."""

    root: str
    files: dict[str, str]
    skipped: dict[str, int] = field(default_factory=dict)
    """Reason → count of files left out (the scanner's reasons plus content rules)."""

    @property
    def n_chars(self) -> int:
        return sum(len(t) for t in self.files.values())


def read_corpus(root: str | os.PathLike[str], *, max_file_bytes: int = 256 * 1024,
                source_only: bool = True, max_files: int | None = None,
                ignore: str = "", include: Callable[[str], bool] | None = None) -> Corpus:
    """Every file under ``root`` the daemon would index; ``source_only`` keeps files of a
    language with an import resolver (the ones dependency-graph packing can place);
    ``include`` (root-relative path → bool) narrows the walk further, e.g. to the files of
    permissively licensed distributions under a site-packages directory."""
    cfg = ContextConfig(max_file_bytes=max_file_bytes, ignore=ignore)
    gate = ReadGate(str(Path(root)), cfg)
    files: dict[str, str] = {}
    skipped: dict[str, int] = {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    for st in gate.scanner.walk():
        if include is not None and not include(st.rel):
            skip("not included")
            continue
        if source_only and resolver_for(st.rel) is None:
            skip("not source")
            continue
        text = gate.read_disk(st.rel)
        if text is None:
            skip("binary, secret or unreadable")
            continue
        if any(s in text for s in _SENTINEL_TEXTS):
            skip("contains a FIM sentinel")
            continue
        if not text.strip():
            skip("empty")
            continue
        files[st.rel] = text
        if max_files is not None and len(files) >= max_files:
            break
    for why, n in gate.scanner.skipped.items():
        skipped[why] = skipped.get(why, 0) + n
    return Corpus(str(root), dict(sorted(files.items())), skipped)
