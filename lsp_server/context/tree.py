"""The set of files of one root as import resolvers see it, with probe recording.

Resolvers ask questions ("does a/b.py exist?", "which files are named foo.h?", "which file
declares the class a.b.C?"). Each question is recorded as a probe key while a file's imports are
resolved; when the answer to a key changes (a file appears or disappears, a config file is
edited, a declaration moves), the graph re-resolves exactly the files that asked it.
"""

from __future__ import annotations

import posixpath
import sys
from typing import Callable, Iterable

Reader = Callable[[str], "str | None"]


def dir_key(d: str) -> str:
    return "dir:" + d


def name_key(name: str) -> str:
    return "name:" + name


def read_key(path: str) -> str:
    return "read:" + path


def sym_key(symbol: str) -> str:
    return "sym:" + symbol


class FileTree:
    """Root-relative file paths with directory, file-name and symbol indexes."""

    def __init__(self, reader: Reader | None = None) -> None:
        self.files: set[str] = set()
        self.dirs: dict[str, set[str]] = {}
        """Directory → names of the files directly in it (directories exist while non-empty)."""
        self.subdirs: dict[str, set[str]] = {}
        """Directory → its child directories that hold files."""
        self.by_name: dict[str, set[str]] = {}
        self.symbols: dict[str, set[str]] = {}
        """Language symbol (e.g. "jvm:a.b.C") → files declaring it."""
        self._reader = reader
        self._probes: set[str] | None = None
        self._parsed: dict[str, tuple[str | None, object]] = {}
        self.memo: dict[object, object] = {}
        """Per-resolution scratch space for resolvers, cleared by :meth:`begin_probes`."""

    # -- recording ---------------------------------------------------------------------------
    def begin_probes(self) -> None:
        self._probes = set()
        self.memo.clear()

    def end_probes(self) -> frozenset[str]:
        probes, self._probes = self._probes or set(), None
        self.memo.clear()
        return frozenset(probes)

    def _probe(self, key: str) -> None:
        if self._probes is not None:
            # Interned: thousands of files record the same keys; one string object each.
            self._probes.add(sys.intern(key))

    # -- questions resolvers ask -------------------------------------------------------------
    def exists(self, path: str) -> bool:
        self._probe(path)
        return path in self.files

    def isdir(self, d: str) -> bool:
        self._probe(dir_key(d))
        return d == "" or d in self.dirs

    def listdir(self, d: str) -> list[str]:
        """Names of the files directly in ``d``, sorted."""
        self._probe(dir_key(d))
        return sorted(self.dirs.get(d, ()))

    def named(self, name: str) -> list[str]:
        """Every file with this base name, sorted."""
        self._probe(name_key(name))
        return sorted(self.by_name.get(name, ()))

    def declared(self, symbol: str) -> list[str]:
        self._probe(sym_key(symbol))
        return sorted(self.symbols.get(symbol, ()))

    def read_text(self, path: str) -> str | None:
        """Contents of a small config file (tsconfig.json, go.mod, …) if it is in the tree."""
        self._probe(read_key(path))
        if path not in self.files or self._reader is None:
            return None
        return self._reader(path)

    def parsed(self, path: str, parse: Callable[[str], object]) -> object | None:
        """``parse(text)`` of a config file, cached until the file changes (see :meth:`changed`)."""
        text = self.read_text(path)
        hit = self._parsed.get(path)
        if hit is not None and hit[0] == text:
            return hit[1]
        value = parse(text) if text is not None else None
        self._parsed[path] = (text, value)
        return value

    # -- changes -----------------------------------------------------------------------------
    def add(self, path: str) -> list[str]:
        """Add a file; returns the probe keys whose answers changed."""
        if path in self.files:
            return []
        self.files.add(path)
        d, name = posixpath.split(path)
        self.by_name.setdefault(name, set()).add(path)
        keys = [path, read_key(path), name_key(name), dir_key(d)]
        self.dirs.setdefault(d, set()).add(name)
        child = d
        while child:  # link the directory chain up to the root; new directories become visible
            parent = posixpath.dirname(child)
            subs = self.subdirs.setdefault(parent, set())
            if child in subs:
                break
            subs.add(child)
            self.dirs.setdefault(parent, set())
            keys.append(dir_key(parent))
            child = parent
        return keys

    def remove(self, path: str) -> list[str]:
        """Remove a file; empty directories disappear with it."""
        if path not in self.files:
            return []
        self.files.discard(path)
        self._parsed.pop(path, None)
        d, name = posixpath.split(path)
        keys = [path, read_key(path), name_key(name), dir_key(d)]
        names = self.by_name.get(name)
        if names is not None:
            names.discard(path)
            if not names:
                del self.by_name[name]
        self.dirs.get(d, set()).discard(name)
        while d and not self.dirs.get(d) and not self.subdirs.get(d):
            self.dirs.pop(d, None)
            self.subdirs.pop(d, None)
            parent = posixpath.dirname(d)
            self.subdirs.get(parent, set()).discard(d)
            keys.append(dir_key(parent))
            d = parent
        return keys

    def changed(self, path: str) -> list[str]:
        """A file's content changed: only readers of it care."""
        self._parsed.pop(path, None)
        return [read_key(path)]

    def declare(self, path: str, symbols: Iterable[str]) -> None:
        for s in symbols:
            self.symbols.setdefault(s, set()).add(path)

    def undeclare(self, path: str, symbols: Iterable[str]) -> None:
        for s in symbols:
            owners = self.symbols.get(s)
            if owners is not None:
                owners.discard(path)
                if not owners:
                    del self.symbols[s]
