"""C and C++ ``#include``: relative to the including file, then anywhere the tree has that path.

"Include dirs found in the tree" without a build system: a header ``foo/bar.h`` resolves to any
indexed file whose path ends with ``foo/bar.h``, the one nearest the including file first. Angle
includes resolve the same way only when the header is in the workspace (else: system header).
"""

from __future__ import annotations

import posixpath
import re

from ..tree import FileTree
from .base import Extracted, ImportRef, Language, closeness, join_norm, strip_c_comments

_INCLUDE = re.compile(r"^[ \t]*#[ \t]*include[ \t]*([<\"])([^>\"\n]+)[>\"]", re.M)


def _scan(text: str) -> list[ImportRef]:
    code = strip_c_comments(text)
    return [ImportRef(spec.strip(), (), "include" if q == '"' else "system")
            for q, spec in _INCLUDE.findall(code)]


def extract(text: str, path: str = "") -> Extracted:
    return Extracted(tuple(dict.fromkeys(_scan(text))))


def fingerprint(text: str) -> str:
    return "\n".join(f"{r.kind}:{r.spec}" for r in _scan(text))


def resolve(ref: ImportRef, importer: str, tree: FileTree) -> tuple[str, ...]:
    spec = ref.spec
    if ref.kind == "include":
        local = join_norm(posixpath.dirname(importer), spec)
        if local is not None and tree.exists(local):
            return (local,) if local != importer else ()
    tail = posixpath.normpath(spec)
    if tail.startswith(".."):
        return ()
    cands = [p for p in tree.named(posixpath.basename(tail))
             if (p == tail or p.endswith("/" + tail)) and p != importer]
    if not cands:
        return ()
    cands.sort(key=lambda p: (-closeness(p, importer), len(p), p))
    return (cands[0],)


LANGUAGE = Language("c", extract, resolve, fingerprint)
