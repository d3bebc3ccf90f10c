"""Context selection for one file: the single function the daemon and training both call.

Given a dependency graph, the current file's text and a token budget, :func:`choose_context`
ranks the candidates (files reachable through imports by distance, the unit-test partner, the
importers), packs them whole or as outlines under the budget, and lays the chosen ones out in
topological order. The daemon's :class:`~.root.RootIndex` calls it with its index (reads through
the read gate and open buffers, cached outlines); training calls it with a graph over in-memory
texts (``model/data/repo_select.py``). Same graph, texts and budget: same files, forms and order.

Plain code (no language-server imports), so ``model/`` can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from ..config import ContextConfig
from ..prompt.assemble import ContextFile
from .graph import DependencyGraph
from .imports import resolver_for
from .outline import OutlineItem, outline
from .packing import PackLimits, Source, identifiers, pack, reserve
from .pairing import test_partner
from .selection import Candidate, ContextRow, layout, rank


@dataclass(frozen=True)
class Chosen:
    files: list[ContextFile]
    """Prompt order: dependencies first, the files nearest the current file last."""
    rows: list[ContextRow]
    """One per file, same order, then the skipped candidates."""
    candidates: list[Candidate]
    """Every ranked candidate, chosen or not (a cache keys on their versions)."""


def file_outline(path: str, text: str) -> list[OutlineItem]:
    """The outline of a file in the language its name says (plain-text rules otherwise)."""
    lang = resolver_for(path)
    return outline(lang.name if lang else None, text)


def _same(path: str) -> str:
    return path


def choose_context(graph: DependencyGraph, target: str, text: str, *,
                   load: Callable[[str], Source | None], count: Callable[[str], int],
                   budget: int, config: ContextConfig, start: Sequence[str] | None = None,
                   repo_name: str = "", label: Callable[[str], str] = _same) -> Chosen:
    """The context files for ``target`` (whose text is ``text``) within ``budget`` tokens.

    ``load`` gives a candidate's text and outline (None: unreadable or excluded); ``count``
    counts tokens. ``start`` is the target's resolved imports in import order (default: its
    edges in ``graph``; a file outside the graph passes its own). ``label`` maps a path to the
    name the model sees, ``repo_name`` is the repository header: both cost budget.
    """
    first = list(graph.deps(target)) if start is None else list(start)

    def deps(p: str) -> Iterable[str]:
        return first if p == target else graph.deps(p).keys()

    partner = test_partner(target, graph.tree) if config.test_pairing else None
    importers = graph.importers(target) if config.importers else []
    cands = rank(target, deps, first, max_distance=config.max_distance,
                 max_candidates=max(4 * config.max_files, 32), partner=partner,
                 importers=importers)
    limits = PackLimits(budget=budget - reserve(count, label(target), repo_name),
                        max_files=config.max_files, whole_distance=config.whole_distance)
    chosen, skipped = pack(cands, load, count, identifiers(text), limits, label)
    by_path = {c.path: (f, row) for c, f, row in chosen}
    ordered = layout([c for c, _, _ in chosen], deps)
    return Chosen([by_path[c.path][0] for c in ordered],
                  [by_path[c.path][1] for c in ordered] + skipped, cands)
