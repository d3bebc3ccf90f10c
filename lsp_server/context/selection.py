"""Which files a completion carries and in which order (CodeGemma's dependency-graph packing).

Ranking: the files reachable from the current one through imports, by shortest-path distance
(ties in import order); then its unit-test partner; then the files that import it. Layout: a
topological order of the chosen files, dependencies before their users, farther files first so
the nearest material sits next to the current file (which the assembler puts last). Both are
pure functions of the graph, so the same graph gives the same prompt, keystroke after keystroke.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..prompt.assemble import ContextFile

Deps = Callable[[str], Iterable[str]]
"""A file's resolved imports, in import order (``lambda p: graph.deps(p)``)."""

# Tiers of candidates, in rank order.
DEPENDENCY, TEST_PAIR, IMPORTER = 0, 1, 2
TIER_REASON = {DEPENDENCY: "import", TEST_PAIR: "test pair", IMPORTER: "importer"}


@dataclass(frozen=True)
class Candidate:
    path: str
    distance: int
    """Import hops from the current file (1 for its test partner and its importers)."""
    tier: int
    via: str | None = None
    """The file through which a distance ≥ 2 dependency is reached."""
    also: str = ""
    """A second reason (e.g. a dependency that is also the test partner)."""

    @property
    def reason(self) -> str:
        base = TIER_REASON[self.tier]
        if self.tier == DEPENDENCY and self.distance > 1 and self.via:
            base = f"import via {self.via}"
        return f"{base} + {self.also}" if self.also else base


@dataclass(frozen=True)
class ContextRow:
    """One line of ``codefill context``: what was chosen (or skipped) and why."""

    path: str
    distance: int
    reason: str
    form: str
    """"whole", "outline", "outline (cut)", or "skipped: <why>"."""
    tokens: int
    """Tokens this file costs in the prompt, headers included (0 when skipped)."""
    used_symbols: int = 0
    """Symbols of this file the current file mentions (moved to the front of outlines)."""


@dataclass
class ContextSelection:
    files: list[ContextFile]
    """In prompt order: pass to ``assemble(context=...)``."""
    rows: list[ContextRow]
    """One per file, same order, then the skipped candidates."""
    budget: int
    used_tokens: int
    status: str = "ok"
    """"ok", "indexing" (first scan not finished), "disabled", "outside workspace", …"""
    unresolved: list[str] = field(default_factory=list)
    """Imports of the current file that name nothing in the workspace (third-party)."""
    elapsed_ms: float = 0.0
    cached: bool = False
    """Reused from the previous request: nothing it depends on changed."""


def rank(current: str, deps: Deps, start_deps: list[str], *, max_distance: int,
         max_candidates: int,
         partner: str | None, importers: list[str]) -> list[Candidate]:
    """Candidates in rank order: BFS over imports, then the test partner, then importers."""
    seen: dict[str, Candidate] = {}
    queue: deque[tuple[str, int]] = deque()
    for p in start_deps:
        if p != current and p not in seen:
            seen[p] = Candidate(p, 1, DEPENDENCY)
            queue.append((p, 1))
    while queue and len(seen) < max_candidates:
        u, d = queue.popleft()
        if d >= max_distance:
            continue
        for v in deps(u):
            if v != current and v not in seen:
                seen[v] = Candidate(v, d + 1, DEPENDENCY, via=u)
                queue.append((v, d + 1))
                if len(seen) >= max_candidates:
                    break
    out = list(seen.values())
    if partner is not None and partner != current:
        if partner in seen:
            c = seen[partner]
            out[out.index(c)] = Candidate(c.path, c.distance, c.tier, c.via, "test pair")
        else:
            out.append(Candidate(partner, 1, TEST_PAIR))
    have = {c.path for c in out}
    out += [Candidate(p, 1, IMPORTER) for p in importers if p not in have and p != current]
    return out


def layout(chosen: list[Candidate], deps: Deps) -> list[Candidate]:
    """Topological order: a file's dependencies (among the chosen) come before it.

    Among files whose dependencies are all placed, the farthest from the current file goes
    first (importers, then the test partner, then dependencies by falling distance), ties by
    path. A cycle is broken by placing the file that would come first anyway.
    """
    by_path = {c.path: c for c in chosen}
    deps_in = {c.path: [t for t in deps(c.path) if t in by_path and t != c.path]
               for c in chosen}

    def key(p: str) -> tuple[int, int, str]:
        c = by_path[p]
        return (-c.tier, -c.distance, p)

    remaining = set(by_path)
    ordered: list[Candidate] = []
    while remaining:
        ready = [p for p in remaining if not any(d in remaining for d in deps_in[p])]
        p = min(ready or remaining, key=key)
        ordered.append(by_path[p])
        remaining.discard(p)
    return ordered
