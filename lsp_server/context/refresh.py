"""Incremental refresh of a root: bringing the index in line with a changed path on disk.

A watchdog batch (or a caller that knows what it changed) names paths; each becomes an upsert
or a drop of one file, a dropped subtree, or a rescan of a directory (a new or moved directory,
a changed ``.gitignore``). :meth:`Refresh.plan_refresh` does all but the rescan and returns the
directory to rescan, so the workspace can walk a big directory in steps without holding its
lock for the whole walk. An open buffer keeps its text in the graph until it is closed.

:class:`ChangeBatches` applies a batch of changed paths across the workspace's roots, one path
per hold of the workspace lock (a bulk arrival, such as a checkout, must not keep selection
waiting for the whole batch), a directory rescanned file by file.
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
import time
from contextlib import nullcontext
from typing import Callable, ContextManager, Iterable

from .gate import ReadGate
from .graph import DependencyGraph
from .imports import resolver_for
from .scan import FileStat

log = logging.getLogger("codefill.context")


class Refresh:
    """Part of :class:`~.root.RootIndex`: file and directory updates from the disk.

    Uses the index's ``gate``, ``graph``, ``stats``, ``buffers`` and ``read``
    (:mod:`.overlay`).
    """

    gate: ReadGate
    graph: DependencyGraph
    stats: dict[str, FileStat]
    buffers: dict[str, tuple[int, str]]
    read: Callable[[str], str | None]

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
        path = os.path.join(self.gate.root, rel)
        if posixpath.basename(rel) == ".gitignore":
            d = posixpath.dirname(rel)
            self.gate.rules.load_dir(self.gate.root, d)
            return d
        if not self.gate.indexable(rel):
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
            st = self.gate.scanner.stat_file(rel)
            if st is None:
                self.drop(rel)
            else:
                self.upsert(st)
        else:
            self.drop_tree(rel)
        return None

    def rescan(self, rel_dir: str, should_stop: Callable[[], bool] = lambda: False,
               lock: ContextManager[object] = nullcontext()) -> None:
        """Walk ``rel_dir`` again: upsert what is there, drop what is gone. Under ``lock``, file
        by file, so that a big directory does not hold it for the whole walk."""
        seen: set[str] = set()
        for st in self.gate.scanner.walk(rel_dir, should_stop):
            seen.add(st.rel)
            with lock:
                self.upsert(st)
            time.sleep(0)  # let a waiting reader take the lock (locks are not fair)
        if should_stop():
            return
        with lock:
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
        if resolver_for(st.rel) is not None:
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


class ChangeBatches:
    """Part of :class:`~.workspace.WorkspaceIndex`: changed paths applied to the roots.

    Uses the workspace's ``_lock``, ``_ready``, ``_stop``, ``_pending`` and ``_locate``.
    """

    _lock: threading.RLock
    _ready: threading.Event
    _stop: threading.Event
    _pending: set[str]
    _locate: Callable[[str], tuple[Refresh, str] | None]
    changes: int
    """Batches of changes applied since the index was built (what context selects may differ)."""

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
        self.changes += 1

    def _rescan_in_steps(self, root: Refresh, rel_dir: str) -> None:
        """Rescan a directory file by file, each under the lock on its own."""
        try:
            root.rescan(rel_dir, self._stop.is_set, self._lock)
        except Exception:  # noqa: BLE001
            log.debug("context index: rescanning %s failed", rel_dir, exc_info=True)
