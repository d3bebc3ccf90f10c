"""The workspace index: files, import graph and context selection for every workspace root.

Lifecycle: ``start()`` scans in a background thread (progress reported through a callback) and
then follows the disk through watchdog; ``update_buffer``/``close_buffer`` overlay the editor's
unsaved text (open buffers win over disk). ``select_context`` never blocks on the scan: until
the first scan is done it answers with status "indexing" and no files.

Every text that can reach a prompt is read through :meth:`RootIndex.read`, which applies the
content rules (binary sniffing, secret detection, size) on top of the path rules of the scan.
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Hashable, Iterable, Sequence

from ..config import ContextConfig
from ..prompt.tokens import Tokenizer
from .filters import (IgnoreRules, compile_extra, decode_text, has_secret_content,
                      ignored_dir_name, is_binary_name, is_secret_name, looks_binary)
from .graph import DependencyGraph
from .imports import language_of
from .outline import OutlineItem, outline
from .packing import PackLimits, Source, TokenCounter, identifiers, pack, reserve
from .pairing import test_partner
from .scan import FileStat, Scanner, ScanLimits, inside
from .selection import ContextRow, ContextSelection, layout, rank
from .watch import Watcher

log = logging.getLogger("codefill.context")

_PROGRESS_EVERY = 2000
_YIELD_EVERY = 200  # files parsed between GIL hand-offs, so the editor thread stays responsive


@dataclass(frozen=True)
class IndexProgress:
    root: str
    phase: str
    """"scanning", "parsing", "ready" or "failed"."""
    files: int
    total: int | None = None


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


class _LRU:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable) -> object | None:
        v = self.data.get(key)
        if v is not None:
            self.data.move_to_end(key)
        return v

    def put(self, key: Hashable, value: object) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.capacity:
            self.data.popitem(last=False)


@dataclass
class _Cached:
    key: tuple
    versions: tuple[tuple[str, Hashable], ...]
    selection: ContextSelection


class RootIndex:
    """Files, graph and caches of one workspace root. Not thread-safe: the owner locks."""

    def __init__(self, root: str, config: ContextConfig, name: str) -> None:
        self.root = os.path.abspath(root)
        self.real_root = os.path.realpath(self.root)
        self.name = name
        self.config = config
        self.rules = IgnoreRules(extra=compile_extra(config.ignore))
        self.scanner = Scanner(self.root, self.rules,
                               ScanLimits(config.max_file_bytes, config.max_index_files))
        self.graph = DependencyGraph(self.read)
        self.stats: dict[str, FileStat] = {}
        self.buffers: dict[str, tuple[int, str]] = {}
        """Open editor buffers: rel → (buffer version, text)."""
        self._buffer_seq = 0
        self._texts = _LRU(512)
        self._outlines = _LRU(512)
        self._selections: dict[str, _Cached] = {}

    # -- reading: the one gate between disk and prompt ---------------------------------------
    def version(self, rel: str) -> Hashable:
        buf = self.buffers.get(rel)
        if buf is not None:
            return ("buffer", buf[0])
        st = self.stats.get(rel)
        return (st.mtime_ns, st.size) if st is not None else None

    def read_disk(self, rel: str) -> str | None:
        """A file's text if it is text, small enough and no secret; None otherwise."""
        path = os.path.join(self.root, rel)
        try:
            # Resolve every component, not only the file's own link: a directory on the way
            # may have been swapped for a symlink out of the root since the scan.
            real = os.path.realpath(path)
            if not inside(real, self.real_root):
                return None
            with open(real, "rb") as fh:
                # The file opened must be the one checked (no swap between check and open).
                st = os.fstat(fh.fileno())
                now = os.stat(os.path.realpath(path))
                if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
                    return None
                data = fh.read(self.config.max_file_bytes + 1)
        except OSError as exc:  # deleted since the scan, permission denied, …
            log.debug("context index: cannot read %s: %s", path, exc)
            return None
        if len(data) > self.config.max_file_bytes or looks_binary(data):
            return None
        text = decode_text(data)
        if has_secret_content(text):
            log.debug("context index: %s holds a secret; excluded", rel)
            return None
        return text

    def read(self, rel: str) -> str | None:
        buf = self.buffers.get(rel)
        if buf is not None:
            return None if has_secret_content(buf[1]) else buf[1]
        key = (rel, self.version(rel))
        hit = self._texts.get(key)
        if isinstance(hit, str):
            return hit
        text = self.read_disk(rel)
        if text is not None and key[1] is not None:
            self._texts.put(key, text)
        return text

    def outline_of(self, rel: str, text: str) -> list[OutlineItem]:
        key = (rel, self.version(rel))
        hit = self._outlines.get(key)
        if isinstance(hit, list):
            return hit
        lang = language_of(rel)
        items = outline(lang.name if lang else None, text)
        self._outlines.put(key, items)
        return items

    # -- path rules ----------------------------------------------------------------------------
    def indexable(self, rel: str) -> bool:
        """Whether the path rules let ``rel`` into the index (content rules come on reading)."""
        if not rel or rel.startswith("../"):
            return False
        name = posixpath.basename(rel)
        if is_secret_name(name) or is_binary_name(name):
            return False
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if ignored_dir_name(parts[i - 1]) or self.rules.ignored(d, True):
                return False
            if os.path.exists(os.path.join(self.root, d, "pyvenv.cfg")):
                return False
        return not self.rules.ignored(rel, False)

    # -- building ------------------------------------------------------------------------------
    def build(self, should_stop: Callable[[], bool], progress: Callable[[IndexProgress], None]
              ) -> None:
        graph = DependencyGraph(self.read)
        stats: dict[str, FileStat] = {}
        entries: list[FileStat] = []
        for st in self.scanner.walk("", should_stop):
            entries.append(st)
            if len(entries) % _PROGRESS_EVERY == 0:
                progress(IndexProgress(self.root, "scanning", len(entries)))
        files: list[tuple[str, str | None]] = []
        for i, st in enumerate(entries):
            if should_stop():
                return
            text = None
            if language_of(st.rel) is not None:
                text = self.read_disk(st.rel)
                if text is None:
                    self.scanner.skipped["binary, secret or unreadable"] = \
                        self.scanner.skipped.get("binary, secret or unreadable", 0) + 1
                    continue
            stats[st.rel] = st
            files.append((st.rel, text))
            if i % _YIELD_EVERY == 0:
                time.sleep(0)
            if i % _PROGRESS_EVERY == 0 and i:
                progress(IndexProgress(self.root, "parsing", i, len(entries)))
        graph.build(files)
        self.install(graph, stats)

    def install(self, graph: DependencyGraph, stats: dict[str, FileStat]) -> None:
        """Swap in a freshly built graph, replaying open buffers on it."""
        self.graph, self.stats = graph, stats
        self._selections.clear()
        for rel, (_, text) in sorted(self.buffers.items()):
            if self.indexable(rel):
                self.graph.update(rel, text)

    # -- incremental updates -------------------------------------------------------------------
    def refresh(self, rel: str) -> None:
        """Bring ``rel`` (a file or a directory, maybe gone) in line with the disk."""
        d = self.plan_refresh(rel)
        if d is not None:
            self.rescan(d)

    def plan_refresh(self, rel: str) -> str | None:
        """:meth:`refresh` except the rescan of a directory, whose path it returns (the
        caller may walk it in steps: a big new directory must not hold the index lock)."""
        if not rel or rel == "." or rel.startswith("../"):
            return ""
        path = os.path.join(self.root, rel)
        if posixpath.basename(rel) == ".gitignore":
            d = posixpath.dirname(rel)
            self.rules.load_dir(self.root, d)
            return d
        if not self.indexable(rel):
            self.drop_tree(rel)
            return None
        try:
            is_dir = os.path.isdir(path)
            exists = os.path.lexists(path)
        except OSError:
            is_dir, exists = False, False
        if is_dir:
            if os.path.islink(path):
                # Out of the root: never. Inside it: its real directory is indexed under its
                # own path already (the first scan indexes each directory once), and
                # following it could walk a loop (a link to an ancestor) as a second tree.
                self.drop_tree(rel)
                return None
            return rel
        elif exists:
            st = self.scanner.stat_file(rel)
            if st is None:
                self.drop(rel)
            else:
                self.upsert(st)
        else:
            self.drop_tree(rel)

    def rescan(self, rel_dir: str) -> None:
        seen: set[str] = set()
        for st in self.scanner.walk(rel_dir):
            seen.add(st.rel)
            self.upsert(st)
        self.drop_unseen(rel_dir, seen)

    def drop_unseen(self, rel_dir: str, seen: set[str]) -> None:
        """Drop the files under ``rel_dir`` a rescan did not find."""
        prefix = rel_dir + "/" if rel_dir else ""
        for rel in [r for r in self.stats if r.startswith(prefix) and r not in seen]:
            self.drop(rel)

    def upsert(self, st: FileStat, force: bool = False) -> None:
        if not force and self.stats.get(st.rel) == st and st.rel in self.graph.tree.files:
            return
        self.stats[st.rel] = st
        if st.rel in self.buffers and not force:
            return  # the editor's text wins; the disk version matters again on close
        text = None
        if language_of(st.rel) is not None:
            text = self.read(st.rel)
            if text is None:
                self.drop(st.rel)
                return
        self.graph.update(st.rel, text)

    def drop(self, rel: str) -> None:
        self.stats.pop(rel, None)
        if rel not in self.buffers:
            self.graph.remove(rel)

    def drop_tree(self, rel: str) -> None:
        prefix = rel + "/"
        for r in [r for r in self.stats if r == rel or r.startswith(prefix)]:
            self.drop(r)
        if rel in self.graph.tree.files and rel not in self.stats and rel not in self.buffers:
            self.graph.remove(rel)

    def set_buffer(self, rel: str, text: str) -> None:
        # A document opened through a symlink that leaves the root is the user's to edit, but
        # its text must not become context for other files (it lives outside the workspace).
        try:
            real = os.path.realpath(os.path.join(self.root, rel))
        except OSError:
            return
        if not inside(real, self.real_root):
            return
        old = self.buffers.get(rel)
        if old is not None and old[1] == text:
            return
        self._buffer_seq += 1
        self.buffers[rel] = (self._buffer_seq, text)
        if self.indexable(rel):
            self.graph.update(rel, text if language_of(rel) else None)

    def clear_buffer(self, rel: str) -> None:
        if self.buffers.pop(rel, None) is None:
            return
        st = self.scanner.stat_file(rel) if self.indexable(rel) else None
        if st is None:
            self.drop_tree(rel)
            self.graph.remove(rel)
        else:
            self.upsert(st, force=True)

    # -- selection -------------------------------------------------------------------------------
    def label(self, rel: str, multi_root: bool) -> str:
        return f"{self.name}/{rel}" if multi_root else rel

    def select(self, rel: str, text: str, counter: TokenCounter, budget: int, repo_name: str,
               multi_root: bool) -> ContextSelection:
        cfg = self.config
        lang = language_of(rel)
        fp = lang.fingerprint(text) if lang else ""
        tracked = self.indexable(rel) and lang is not None
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

        def deps(p: str) -> Iterable[str]:
            return start if p == rel else self.graph.deps(p).keys()

        partner = test_partner(rel, self.graph.tree) if cfg.test_pairing else None
        importers = self.graph.importers(rel) if cfg.importers else []
        cands = rank(rel, deps, start, max_distance=cfg.max_distance,
                     max_candidates=max(4 * cfg.max_files, 32), partner=partner,
                     importers=importers)
        label = (lambda p: self.label(p, multi_root))
        limits = PackLimits(budget=budget - reserve(counter, label(rel), repo_name),
                            max_files=cfg.max_files, whole_distance=cfg.whole_distance)

        def load(p: str) -> Source | None:
            t = self.read(p)
            if t is None:
                return None
            return Source(t, lambda: self.outline_of(p, t))

        chosen, skipped = pack(cands, load, counter, identifiers(text), limits, label)
        by_path = {c.path: (f, row) for c, f, row in chosen}
        ordered = layout([c for c, _, _ in chosen], deps)
        files = [by_path[c.path][0] for c in ordered]
        rows: list[ContextRow] = [by_path[c.path][1] for c in ordered] + skipped
        sel = ContextSelection(files=files, rows=rows, budget=budget,
                               used_tokens=sum(r.tokens for r in rows), unresolved=unresolved)
        # Any candidate's content can change the packing (a skipped file that now fits).
        self._selections[rel] = _Cached(key, tuple((c.path, self.version(c.path))
                                                   for c in cands), sel)
        return sel

    def _detached(self, rel: str, text: str) -> tuple[list[str], list[str]]:
        """Imports of a file that is not in the index (ignored, unsaved elsewhere)."""
        lang = language_of(rel)
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


class WorkspaceIndex:
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
            for base in (r.root, r.real_root):
                if p == base or p.startswith(base.rstrip(os.sep) + os.sep):
                    rel = os.path.relpath(p, base).replace(os.sep, "/")
                    if best is None or len(r.root) > len(best[0].root):
                        best = (r, "" if rel == "." else rel)
        return best

    def apply_changes(self, paths: Iterable[str]) -> None:
        """Absolute paths changed on disk (watchdog batches; callers may report too)."""
        paths = list(paths)
        with self._lock:
            if not self._ready.is_set():
                self._pending.update(paths)
                return
        # One path per lock hold: a bulk arrival (a checkout, an unpacked archive) must not
        # keep status requests and context selection waiting for the whole batch.
        for p in paths:
            if self._stop.is_set():
                return
            with self._lock:
                hit = self._locate(p)
                if hit is None:
                    continue
                root, rel = hit
                try:
                    rescan = root.plan_refresh(rel)
                except Exception:  # noqa: BLE001
                    log.debug("context index: refreshing %s failed", p, exc_info=True)
                    continue
            time.sleep(0)  # let a waiting reader take the lock (locks are not fair)
            if rescan is not None:
                self._rescan_in_steps(root, rescan)

    def _rescan_in_steps(self, root: RootIndex, rel_dir: str) -> None:
        """Rescan a directory file by file, each under the lock on its own."""
        seen: set[str] = set()
        try:
            for st in root.scanner.walk(rel_dir, self._stop.is_set):
                seen.add(st.rel)
                with self._lock:
                    root.upsert(st)
                time.sleep(0)
            if self._stop.is_set():
                return
            with self._lock:
                root.drop_unseen(rel_dir, seen)
        except Exception:  # noqa: BLE001
            log.debug("context index: rescanning %s failed", rel_dir, exc_info=True)

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

        ``budget_tokens`` is the prompt's context share (see :func:`context_budget`); files are
        returned in prompt order for ``assemble(context=...)``. Never raises for bad input.
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
                for k, v in r.scanner.skipped.items():
                    skipped[k] = skipped.get(k, 0) + v
            return IndexStats(
                state=self.state,
                files=sum(len(r.stats) for r in self.roots),
                source_files=sum(len(r.graph.nodes) for r in self.roots),
                edges=sum(len(n.edges) for r in self.roots for n in r.graph.nodes.values()),
                skipped=skipped, build_seconds=self.build_seconds,
                watching=self._watcher is not None and self._watcher.error is None,
                watch_error=self._watcher.error if self._watcher else None)


def context_budget(total: int, context_share: float, n_special: int = 4) -> int:
    """The context tokens ``assemble`` allows in a prompt of ``total`` tokens (its own split)."""
    return max(0, int((total - n_special) * context_share))
