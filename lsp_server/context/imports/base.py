"""Types shared by the per-language import extractors and resolvers."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Callable

from ..tree import FileTree


@dataclass(frozen=True)
class ImportRef:
    """One import as written in the source, before resolution."""

    spec: str
    """The module/path/header as written: "..pkg.mod", "./util", "crate::a::b", "foo.h"."""
    names: tuple[str, ...] = ()
    """Names imported from it when the language says (``from m import a, b``)."""
    kind: str = "import"
    """Language-specific flavour: "from", "mod", "use", "include", "system", "samepkg", …"""


@dataclass(frozen=True)
class Extracted:
    refs: tuple[ImportRef, ...]
    provides: tuple[str, ...] = ()
    """Symbols the file declares for other files' resolution (e.g. "jvm:a.b.C")."""
    fingerprint: str | None = None
    """The language's fingerprint of the same text, when extraction computed it anyway."""


Extractor = Callable[[str, str], Extracted]
"""(text, root-relative path) → imports."""
Resolver = Callable[[ImportRef, str, FileTree], tuple[str, ...]]
"""(import, importing file, tree) → files it resolves to; () = not in the workspace."""
Fingerprinter = Callable[[str], str]
"""Cheap digest of the import statements: equal digests mean equal imports."""


@dataclass(frozen=True)
class Language:
    name: str
    extract: Extractor
    resolve: Resolver
    fingerprint: Fingerprinter


# Strings (kept) or comments (blanked) of C-family syntax, in one pass.
_C_TOKENS = re.compile(
    r"(\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|(/\*.*?\*/|//[^\n]*)",
    re.S)


def strip_c_comments(text: str) -> str:
    """Text with // and /* */ comments blanked (newlines kept so line numbers survive)."""
    def repl(m: re.Match[str]) -> str:
        if m.group(2) is None:
            return m.group(1)
        return re.sub(r"[^\n]", " ", m.group(2))
    return _C_TOKENS.sub(repl, text)


def join_norm(base: str, rel: str) -> str | None:
    """Root-relative normalised ``base/rel``; None when it climbs out of the root."""
    p = posixpath.normpath(posixpath.join(base, rel)) if base else posixpath.normpath(rel)
    if p == ".":
        return ""
    if p.startswith("../") or p == ".." or p.startswith("/"):
        return None
    return p


def first_existing(tree: FileTree, candidates: list[str]) -> str | None:
    for c in candidates:
        if tree.exists(c):
            return c
    return None


def closeness(a: str, b: str) -> int:
    """Number of leading directory components two paths share."""
    pa, pb = posixpath.dirname(a).split("/"), posixpath.dirname(b).split("/")
    n = 0
    for x, y in zip(pa, pb):
        if x != y:
            break
        n += 1
    return n


def nearest_upward(tree: FileTree, start_dir: str, names: tuple[str, ...]) -> str | None:
    """The first file named one of ``names`` in ``start_dir`` or its ancestors."""
    d = start_dir
    while True:
        for n in names:
            p = f"{d}/{n}" if d else n
            if tree.exists(p):
                return p
        if not d:
            return None
        d = posixpath.dirname(d)
