"""Selection inside a root's index: the current file's imports, and a cache per file.

:meth:`CachedSelection.select` finds the current file's imports (from the graph, updated first
when imports were typed but not saved; resolved on the fly for a file the index does not hold),
then calls :func:`~.choose.choose_context`, the selection training uses too, with the index's
reads and outlines. The result is cached per file and reused, marked ``cached``, while nothing
it depends on changed: the same budget, tokenizer and graph generation, the same imports, and
the same version of every ranked candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Hashable

from .choose import choose_context
from .gate import ReadGate
from .graph import DependencyGraph
from .imports import resolver_for
from .outline import OutlineItem
from .packing import Source, TokenCounter
from .selection import ContextSelection


@dataclass
class _Cached:
    key: tuple
    versions: tuple[tuple[str, Hashable], ...]
    selection: ContextSelection


class CachedSelection:
    """Part of :class:`~.root.RootIndex`: context selection for a file of the root.

    Uses the index's ``name``, ``gate``, ``graph``, ``read``, ``outline_of`` and
    ``version`` (:mod:`.overlay`).
    """

    name: str
    gate: ReadGate
    graph: DependencyGraph
    read: Callable[[str], str | None]
    outline_of: Callable[[str, str], list[OutlineItem]]
    version: Callable[[str], Hashable]

    def __init__(self) -> None:
        self._selections: dict[str, _Cached] = {}

    def forget_selections(self) -> None:
        self._selections.clear()

    def label(self, rel: str, multi_root: bool) -> str:
        return f"{self.name}/{rel}" if multi_root else rel

    def select(self, rel: str, text: str, counter: TokenCounter, budget: int, repo_name: str,
               multi_root: bool) -> ContextSelection:
        lang = resolver_for(rel)
        fp = lang.fingerprint(text) if lang else ""
        tracked = self.gate.indexable(rel) and lang is not None
        if tracked:
            node = self.graph.nodes.get(rel)
            if node is None or node.fingerprint != fp:
                self.graph.update(rel, text)  # imports typed but not yet saved
            start = list(self.graph.deps(rel))
            unresolved = [r.spec for r in self.graph.unresolved(rel)]
        else:
            start, unresolved = self._detached(rel, text)
        key = (rel, id(counter.tok), budget, repo_name, multi_root, self.graph.generation, fp,
               tuple(start))
        cached = self._selections.get(rel)
        if cached is not None and cached.key == key and all(
                self.version(p) == v for p, v in cached.versions):
            return replace(cached.selection, cached=True)

        def load(p: str) -> Source | None:
            t = self.read(p)
            if t is None:
                return None
            return Source(t, lambda: self.outline_of(p, t))

        chosen = choose_context(self.graph, rel, text, load=load, count=counter, budget=budget,
                                config=self.gate.config, start=start, repo_name=repo_name,
                                label=lambda p: self.label(p, multi_root))
        sel = ContextSelection(files=chosen.files, rows=chosen.rows, budget=budget,
                               used_tokens=sum(r.tokens for r in chosen.rows),
                               unresolved=unresolved)
        # Any candidate's content can change the packing (a skipped file that now fits).
        self._selections[rel] = _Cached(key, tuple((c.path, self.version(c.path))
                                                   for c in chosen.candidates), sel)
        return sel

    def _detached(self, rel: str, text: str) -> tuple[list[str], list[str]]:
        """Imports of a file that is not in the index (ignored, unsaved elsewhere)."""
        lang = resolver_for(rel)
        if lang is None:
            return [], []
        tree = self.graph.tree
        start: list[str] = []
        unresolved: list[str] = []
        for ref in lang.extract(text, rel).refs:
            try:
                targets = lang.resolve(ref, rel, tree)
            except Exception:  # noqa: BLE001
                targets = ()
            start += [t for t in targets if t not in start]
            if not targets and ref.kind != "samepkg":
                unresolved.append(ref.spec)
        return start, unresolved
