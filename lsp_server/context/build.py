"""The initial build of a root: scan, read and parse every file, then swap the result in.

:meth:`InitialBuild.build` walks the root through the read gate into a fresh graph, reporting
progress through a callback and handing the GIL off now and then so the editor thread stays
responsive; :meth:`InitialBuild.install` swaps the new graph in and replays the open buffers
on it (they win over the disk the scan read).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .gate import ReadGate
from .graph import DependencyGraph
from .imports import resolver_for
from .scan import FileStat

_PROGRESS_EVERY = 2000
_YIELD_EVERY = 200  # files parsed between GIL hand-offs, so the editor thread stays responsive


@dataclass(frozen=True)
class IndexProgress:
    root: str
    phase: str
    """"scanning", "parsing", "ready" or "failed"."""
    files: int
    total: int | None = None


class InitialBuild:
    """Part of :class:`~.root.RootIndex`: the first full scan and parse of the root.

    Uses the index's ``gate``, ``buffers`` and ``read``; sets ``graph`` and ``stats`` and
    clears the selection cache (:mod:`.root_select`).
    """

    gate: ReadGate
    graph: DependencyGraph
    stats: dict[str, FileStat]
    buffers: dict[str, tuple[int, str]]
    read: Callable[[str], str | None]
    forget_selections: Callable[[], None]

    def build(self, should_stop: Callable[[], bool], progress: Callable[[IndexProgress], None]
              ) -> None:
        graph = DependencyGraph(self.read)
        stats: dict[str, FileStat] = {}
        entries: list[FileStat] = []
        scanner = self.gate.scanner
        for st in scanner.walk("", should_stop):
            entries.append(st)
            if len(entries) % _PROGRESS_EVERY == 0:
                progress(IndexProgress(self.gate.root, "scanning", len(entries)))
        files: list[tuple[str, str | None]] = []
        for i, st in enumerate(entries):
            if should_stop():
                return
            text = None
            if resolver_for(st.rel) is not None:
                text = self.gate.read_disk(st.rel)
                if text is None:
                    scanner.skipped["binary, secret or unreadable"] = \
                        scanner.skipped.get("binary, secret or unreadable", 0) + 1
                    continue
            stats[st.rel] = st
            files.append((st.rel, text))
            if i % _YIELD_EVERY == 0:
                time.sleep(0)
            if i % _PROGRESS_EVERY == 0 and i:
                progress(IndexProgress(self.gate.root, "parsing", i, len(entries)))
        graph.build(files)
        self.install(graph, stats)

    def install(self, graph: DependencyGraph, stats: dict[str, FileStat]) -> None:
        """Swap in a freshly built graph, replaying open buffers on it."""
        self.graph, self.stats = graph, stats
        self.forget_selections()
        for rel, (_, text) in sorted(self.buffers.items()):
            if self.gate.indexable(rel):
                self.graph.update(rel, text)
