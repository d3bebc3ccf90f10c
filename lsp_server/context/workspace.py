"""The workspace index: every workspace root's index, behind the API the language server uses.

Lifecycle: ``start()`` scans in a background thread (progress reported through a callback) and
then follows the disk through watchdog; ``update_buffer``/``close_buffer`` overlay the editor's
unsaved text (open buffers win over disk). ``select_context`` never blocks on the scan: until
the first scan is done it answers with status "indexing" and no files.

This module owns the roots, the lock over them and the background thread: changes that arrive
during the first scan queue up until it ends (then :mod:`.refresh` applies them, as it applies
every watchdog batch). What happens inside one root is :class:`~.root.RootIndex`'s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..config import ContextConfig
from ..prompt.tokens import Tokenizer
from .build import IndexProgress
from .packing import TokenCounter
from .refresh import ChangeBatches
from .root import RootIndex
from .selection import ContextSelection
from .watch import Watcher

log = logging.getLogger("codefill.context")


@dataclass
class IndexStats:
    state: str
    files: int = 0
    source_files: int = 0
    edges: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    build_seconds: float = 0.0
    watching: bool = False
    watch_error: str | None = None


class WorkspaceIndex(ChangeBatches):
    """Repository context for the workspace roots; the API the language server wires in."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]], config: ContextConfig | None = None,
                 *, on_progress: Callable[[IndexProgress], None] | None = None) -> None:
        self.config = config or ContextConfig()
        seen: dict[str, None] = {}
        for r in roots:
            seen.setdefault(os.path.abspath(os.fspath(r)))
        names = [os.path.basename(r.rstrip(os.sep)) or r for r in seen]
        self.roots = [RootIndex(r, self.config, n) for r, n in zip(seen, names)]
        self._on_progress = on_progress or (lambda p: None)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self._pending: set[str] = set()
        self._counters: dict[int, TokenCounter] = {}
        self.state = "idle"
        self.changes = 0
        self.build_seconds = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Scan in the background, then watch the disk (if ``config.watch``)."""
        if self._thread is not None or not self.config.enabled:
            return
        self.state = "indexing"
        self._thread = threading.Thread(target=self._run, args=(self.config.watch,),
                                        name="codefill-context-index", daemon=True)
        self._thread.start()

    def build(self) -> None:
        """Scan synchronously, without watching (CLI, benchmarks, tests)."""
        self.state = "indexing"
        self._build_all()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.state = "stopped"

    def _run(self, watch: bool) -> None:
        if watch:  # watch first: changes made while scanning queue up in _pending
            self._watcher = Watcher([r.root for r in self.roots], self.apply_changes,
                                    self.config.debounce_ms / 1000)
            if not self._watcher.start():
                log.warning("context index: %s", self._watcher.error)
        try:
            self._build_all()
        except Exception:  # noqa: BLE001 - a broken index must not take the server down
            log.exception("context index: building failed")
            self.state = "failed"
            for r in self.roots:
                self._on_progress(IndexProgress(r.root, "failed", 0))

    def _build_all(self) -> None:
        t0 = time.perf_counter()
        for r in self.roots:
            if self._stop.is_set():
                return
            r.build(self._stop.is_set, self._on_progress)
        with self._lock:
            self.build_seconds = time.perf_counter() - t0
            self.state = "ready"
            self._ready.set()
            pending, self._pending = sorted(self._pending), set()
        if pending:
            self.apply_changes(pending)
        for r in self.roots:
            self._on_progress(IndexProgress(r.root, "ready", len(r.stats)))

    # -- changes ---------------------------------------------------------------------------------
    def _locate(self, path: str | os.PathLike[str]) -> tuple[RootIndex, str] | None:
        p = os.path.abspath(os.fspath(path))
        best: tuple[RootIndex, str] | None = None
        for r in self.roots:
            for base in (r.root, r.gate.real_root):
                if p == base or p.startswith(base.rstrip(os.sep) + os.sep):
                    rel = os.path.relpath(p, base).replace(os.sep, "/")
                    if best is None or len(r.root) > len(best[0].root):
                        best = (r, "" if rel == "." else rel)
        return best

    def update_buffer(self, path: str | os.PathLike[str], text: str) -> None:
        """The editor's text of an open document (wins over the disk until closed)."""
        hit = self._locate(path)
        if hit is None or not hit[1]:
            return
        with self._lock:
            hit[0].set_buffer(hit[1], text)

    def close_buffer(self, path: str | os.PathLike[str]) -> None:
        hit = self._locate(path)
        if hit is None or not hit[1]:
            return
        with self._lock:
            hit[0].clear_buffer(hit[1])

    # -- selection ---------------------------------------------------------------------------------
    def _counter(self, tok: Tokenizer) -> TokenCounter:
        c = self._counters.get(id(tok))
        if c is None or c.tok is not tok:
            if len(self._counters) >= 4:
                self._counters.clear()
            c = self._counters[id(tok)] = TokenCounter(tok)
        return c

    def select_context(self, path: str | os.PathLike[str], prefix: str, suffix: str,
                       tokenizer: Tokenizer, budget_tokens: int, *, repo_name: str = ""
                       ) -> ContextSelection:
        """The context files for a completion in ``path`` between ``prefix`` and ``suffix``.

        ``budget_tokens`` is the prompt's context allowance (``Budget.context_allowance``);
        files are returned in prompt order for ``assemble(context=...)``. Never raises for bad
        input.
        """
        t0 = time.perf_counter()

        def done(sel: ContextSelection) -> ContextSelection:
            sel.elapsed_ms = (time.perf_counter() - t0) * 1000
            return sel

        if not self.config.enabled or self.config.max_files == 0:
            return done(ContextSelection([], [], budget_tokens, 0, status="disabled"))
        hit = self._locate(path)
        if hit is None or not hit[1]:
            return done(ContextSelection([], [], budget_tokens, 0, status="outside workspace"))
        if not self._ready.is_set():
            return done(ContextSelection([], [], budget_tokens, 0, status="indexing"))
        root, rel = hit
        with self._lock:
            try:
                sel = root.select(rel, prefix + suffix, self._counter(tokenizer), budget_tokens,
                                  repo_name, len(self.roots) > 1)
            except Exception:  # noqa: BLE001 - no context beats no completion
                log.exception("context selection failed for %s", rel)
                sel = ContextSelection([], [], budget_tokens, 0, status="error")
        return done(sel)

    def stats(self) -> IndexStats:
        with self._lock:
            skipped: dict[str, int] = {}
            for r in self.roots:
                for k, v in r.gate.scanner.skipped.items():
                    skipped[k] = skipped.get(k, 0) + v
            return IndexStats(
                state=self.state,
                files=sum(len(r.stats) for r in self.roots),
                source_files=sum(len(r.graph.nodes) for r in self.roots),
                edges=sum(len(n.edges) for r in self.roots for n in r.graph.nodes.values()),
                skipped=skipped, build_seconds=self.build_seconds,
                watching=self._watcher is not None and self._watcher.error is None,
                watch_error=self._watcher.error if self._watcher else None)
