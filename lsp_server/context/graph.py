"""The dependency graph: files → the workspace files they import, kept current incrementally.

Resolution depends on which files exist, so every resolution records the questions it asked
the :class:`FileTree` (probe keys). A change re-resolves only the files whose probes it touches:
a new ``util.py`` re-resolves the files that looked for ``util.py``, an edited tsconfig.json the
files that read it. Works on any mapping of texts, so ``model/`` packs training data with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .imports import ImportRef, resolver_for
from .tree import FileTree

log = logging.getLogger("codefill.context")


@dataclass
class Node:
    refs: tuple[ImportRef, ...]
    provides: tuple[str, ...]
    fingerprint: str
    edges: dict[str, ImportRef] = field(default_factory=dict)
    """Resolved target file → the first import that names it."""
    unresolved: tuple[ImportRef, ...] = ()
    """Imports that name nothing in the workspace (third-party, standard library, system)."""
    probes: frozenset[str] = frozenset()


class DependencyGraph:
    """Import edges between the files of one root."""

    def __init__(self, reader: Callable[[str], str | None] | None = None) -> None:
        self.tree = FileTree(reader)
        self.nodes: dict[str, Node] = {}
        self.importers_of: dict[str, set[str]] = {}
        self._probers: dict[str, set[str]] = {}
        self.generation = 0
        """Incremented whenever any edge appears or disappears."""
        self._pending_symbols: list[str] = []
        """Symbol keys declared or withdrawn by the last parse, for :meth:`_after`."""

    @classmethod
    def from_texts(cls, texts: Mapping[str, str]) -> "DependencyGraph":
        """A graph over in-memory files (root-relative paths → text), e.g. a training repo."""
        g = cls(texts.get)
        g.build((p, texts[p]) for p in sorted(texts))
        return g

    # -- building ----------------------------------------------------------------------------
    def build(self, files: Iterable[tuple[str, str | None]]) -> None:
        """Add many files (text None: a file that is not source code), then resolve once."""
        for path, text in files:
            self.tree.add(path)
            if text is not None:
                self._parse(path, text)
        self._pending_symbols = []  # everything is resolved below anyway
        for path in sorted(self.nodes):
            self._resolve(path)

    def add_path(self, path: str) -> None:
        """A non-source file (config, data) that resolvers may look for."""
        self._after(self.tree.add(path), skip=())

    def update(self, path: str, text: str | None) -> bool:
        """Add or change a file; returns whether any edge changed."""
        gen = self.generation
        keys = self.tree.add(path)
        if text is None or resolver_for(path) is None:
            keys += self.tree.changed(path)
            self._after(keys, skip=())
            return self.generation != gen
        lang = resolver_for(path)
        assert lang is not None
        old = self.nodes.get(path)
        fp = lang.fingerprint(text)
        if old is not None and old.fingerprint == fp:
            self._after(keys + self.tree.changed(path), skip=())
            return self.generation != gen
        self._parse(path, text, fingerprint=fp)
        keys += self.tree.changed(path)
        self._resolve(path)
        self._after(keys, skip=(path,))
        return self.generation != gen

    def remove(self, path: str) -> bool:
        gen = self.generation
        node = self.nodes.pop(path, None)
        if node is not None:
            self.tree.undeclare(path, node.provides)
            self._set_edges(path, node, {})
            self._forget_probes(path, node.probes)
        keys = self.tree.remove(path)
        keys += [f"sym:{s}" for s in (node.provides if node else ())]
        self._after(keys, skip=())
        return self.generation != gen

    # -- queries -----------------------------------------------------------------------------
    def deps(self, path: str) -> dict[str, ImportRef]:
        node = self.nodes.get(path)
        return node.edges if node is not None else {}

    def importers(self, path: str) -> list[str]:
        return sorted(self.importers_of.get(path, ()))

    def unresolved(self, path: str) -> tuple[ImportRef, ...]:
        node = self.nodes.get(path)
        return node.unresolved if node is not None else ()

    # -- internals ---------------------------------------------------------------------------
    def _parse(self, path: str, text: str, fingerprint: str | None = None) -> None:
        lang = resolver_for(path)
        if lang is None:
            return
        try:
            ex = lang.extract(text, path)
        except Exception:  # noqa: BLE001 - a pathological file must not stop the index
            log.debug("context graph: cannot extract imports of %s", path, exc_info=True)
            ex = None
        old = self.nodes.get(path)
        refs = ex.refs if ex else ()
        provides = ex.provides if ex else ()
        if fingerprint is None:
            fingerprint = ex.fingerprint if ex and ex.fingerprint is not None \
                else lang.fingerprint(text)
        if old is not None:
            self.tree.undeclare(path, old.provides)
            node = Node(refs, provides, fingerprint, old.edges, old.unresolved, old.probes)
        else:
            node = Node(refs, provides, fingerprint)
        self.tree.declare(path, provides)
        self.nodes[path] = node
        if old is not None and set(old.provides) != set(provides):
            changed = set(old.provides) ^ set(provides)
            self._pending_symbols = [f"sym:{s}" for s in changed]
        elif old is None and provides:
            self._pending_symbols = [f"sym:{s}" for s in provides]

    def _resolve(self, path: str) -> None:
        node = self.nodes.get(path)
        lang = resolver_for(path)
        if node is None or lang is None:
            return
        edges: dict[str, ImportRef] = {}
        unresolved: list[ImportRef] = []
        self.tree.begin_probes()
        try:
            for ref in node.refs:
                try:
                    targets = lang.resolve(ref, path, self.tree)
                except Exception:  # noqa: BLE001
                    log.debug("context graph: cannot resolve %r in %s", ref, path, exc_info=True)
                    targets = ()
                for t in targets:
                    edges.setdefault(t, ref)
                if not targets and ref.kind != "samepkg":
                    unresolved.append(ref)
        finally:
            probes = self.tree.end_probes()
        self._forget_probes(path, node.probes)
        for key in probes:
            self._probers.setdefault(key, set()).add(path)
        node.probes = probes
        node.unresolved = tuple(unresolved)
        self._set_edges(path, node, edges)

    def _set_edges(self, path: str, node: Node, edges: dict[str, ImportRef]) -> None:
        old = node.edges
        if old.keys() == edges.keys():
            node.edges = edges
            return
        for t in old.keys() - edges.keys():
            s = self.importers_of.get(t)
            if s is not None:
                s.discard(path)
                if not s:
                    del self.importers_of[t]
        for t in edges.keys() - old.keys():
            self.importers_of.setdefault(t, set()).add(path)
        node.edges = edges
        self.generation += 1

    def _forget_probes(self, path: str, probes: frozenset[str]) -> None:
        for key in probes:
            s = self._probers.get(key)
            if s is not None:
                s.discard(path)
                if not s:
                    del self._probers[key]

    def _after(self, keys: list[str], skip: Iterable[str]) -> None:
        """Re-resolve the files whose probes these keys (and pending symbol changes) touch."""
        keys = keys + self._pending_symbols
        self._pending_symbols = []
        todo: set[str] = set()
        for k in keys:
            todo |= self._probers.get(k, set())
        todo -= set(skip)
        for p in sorted(todo):
            self._resolve(p)
