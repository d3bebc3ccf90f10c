"""Context selection for a training target, from a graph over in-memory files.

Training has a ``DependencyGraph.from_texts`` and no index; it calls the daemon's own selection,
:func:`lsp_server.context.choose.choose_context`, with the texts in memory and
``ContextConfig``'s defaults, so a training example carries the files, forms and order the
daemon would put in the prompt for the same file.
"""

from __future__ import annotations

from typing import Callable, Mapping

from lsp_server.config import ContextConfig
from lsp_server.context.choose import Chosen, choose_context, file_outline
from lsp_server.context.graph import DependencyGraph
from lsp_server.context.outline import OutlineItem
from lsp_server.context.packing import Source


def select_for_target(graph: DependencyGraph, texts: Mapping[str, str], target: str,
                      count: Callable[[str], int], budget: int,
                      cfg: ContextConfig | None = None,
                      outlines: dict[str, list[OutlineItem]] | None = None) -> Chosen:
    """The context files for ``target`` within ``budget`` tokens, as the daemon selects them.

    ``outlines`` memoises outlines by path across calls (the index keeps them in an LRU; an
    outline is an ``ast.parse`` of the whole file, the dominant cost of building examples).
    """

    def load(p: str) -> Source | None:
        t = texts.get(p)
        if t is None:
            return None

        def items() -> list[OutlineItem]:
            if outlines is None:
                return file_outline(p, t)
            if p not in outlines:
                outlines[p] = file_outline(p, t)
            return outlines[p]

        return Source(t, items)

    return choose_context(graph, target, texts[target], load=load, count=count, budget=budget,
                          config=cfg or ContextConfig())
