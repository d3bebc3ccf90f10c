"""Context selection for a training target, from a graph over in-memory files.

The daemon's selection (rank by import distance, add the unit-test partner and importers, pack
whole files or outlines under a token budget, lay them out topologically) lives inside
``RootIndex.select``, bound to a disk-backed index with its caches. Training has a
``DependencyGraph.from_texts`` and no index, so this module strings the same public pieces
together in the same way (``rank``, ``pairing.test_partner``, ``packing.pack``, ``layout``,
``outline``), with ``ContextConfig``'s defaults, so a training example carries the files, forms
and order the daemon would put in the prompt for the same file. It adds no graph logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from lsp_server.config import ContextConfig
from lsp_server.context.graph import DependencyGraph
from lsp_server.context.imports import language_of
from lsp_server.context.outline import OutlineItem, outline
from lsp_server.context.packing import PackLimits, Source, identifiers, pack, reserve
from lsp_server.context.pairing import test_partner
from lsp_server.context.selection import Candidate, ContextRow, layout, rank
from lsp_server.prompt.assemble import ContextFile


@dataclass(frozen=True)
class Selected:
    files: list[ContextFile]
    """Prompt order: dependencies first, the files nearest the target last."""
    rows: list[ContextRow]
    candidates: list[Candidate]
    """Every ranked candidate, chosen or not (for tests and statistics)."""


def select_for_target(graph: DependencyGraph, texts: Mapping[str, str], target: str,
                      count: Callable[[str], int], budget: int,
                      cfg: ContextConfig | None = None,
                      outlines: dict[str, list[OutlineItem]] | None = None) -> Selected:
    """The context files for ``target`` within ``budget`` tokens, as the daemon selects them.

    ``outlines`` memoises outlines by path across calls (the index keeps them in an LRU; an
    outline is an ``ast.parse`` of the whole file, the dominant cost of building examples).
    """
    cfg = cfg or ContextConfig()
    text = texts[target]

    def deps(p: str) -> Iterable[str]:
        return graph.deps(p).keys()

    start = list(graph.deps(target))
    partner = test_partner(target, graph.tree) if cfg.test_pairing else None
    importers = graph.importers(target) if cfg.importers else []
    cands = rank(target, deps, start, max_distance=cfg.max_distance,
                 max_candidates=max(4 * cfg.max_files, 32), partner=partner,
                 importers=importers)
    limits = PackLimits(budget=budget - reserve(count, target, ""), max_files=cfg.max_files,
                        whole_distance=cfg.whole_distance)

    def load(p: str) -> Source | None:
        t = texts.get(p)
        if t is None:
            return None
        lang = language_of(p)

        def items() -> list[OutlineItem]:
            if outlines is None:
                return outline(lang.name if lang else None, t)
            if p not in outlines:
                outlines[p] = outline(lang.name if lang else None, t)
            return outlines[p]

        return Source(t, items)

    if limits.budget <= 0:
        return Selected([], [], cands)
    chosen, skipped = pack(cands, load, count, identifiers(text), limits)
    by_path = {c.path: (f, row) for c, f, row in chosen}
    ordered = layout([c for c, _, _ in chosen], deps)
    return Selected([by_path[c.path][0] for c in ordered],
                    [by_path[c.path][1] for c in ordered] + skipped, cands)
