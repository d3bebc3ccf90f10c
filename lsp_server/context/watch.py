"""File-system watching with watchdog, debounced into batches of changed paths.

One recursive observer per root (one inotify instance, not one thread per directory); events
inside ignored directories are dropped cheaply by the index. A burst (a git checkout, a build)
is delivered as one batch once the tree has been quiet for ``debounce_s`` (or after ``max_delay_s``
at the latest, so a never-ending stream of writes cannot starve the index).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger("codefill.context")

Sink = Callable[[list[str]], None]

# Events that say nothing about content or existence.
_QUIET_EVENTS = frozenset({"opened", "closed_no_write"})


class _Handler(FileSystemEventHandler):
    def __init__(self, batcher: "Batcher") -> None:
        self.batcher = batcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _QUIET_EVENTS:
            return
        paths = [event.src_path]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(dest)
        self.batcher.add(p.decode() if isinstance(p, bytes) else p for p in paths)


class Batcher:
    """Collects paths and hands them to ``sink`` after a quiet period, on its own thread."""

    def __init__(self, sink: Sink, debounce_s: float, max_delay_s: float = 1.0) -> None:
        self.sink = sink
        self.debounce_s = debounce_s
        self.max_delay_s = max(max_delay_s, debounce_s)
        self._paths: set[str] = set()
        self._first = 0.0
        self._last = 0.0
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="codefill-context-watch",
                                        daemon=True)
        self._thread.start()

    def add(self, paths: Iterable[str]) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._paths:
                self._first = now
            self._paths.update(paths)
            self._last = now
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._paths and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                now = time.monotonic()
                due = min(self._last + self.debounce_s, self._first + self.max_delay_s)
                if now < due:
                    self._cond.wait(due - now)
                    continue
                batch, self._paths = sorted(self._paths), set()
            try:
                self.sink(batch)
            except Exception:  # noqa: BLE001 - the watcher must outlive a bad batch
                log.exception("context index: applying file changes failed")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)


class Watcher:
    """Watches roots recursively and delivers debounced batches of changed absolute paths."""

    def __init__(self, roots: list[str], sink: Sink, debounce_s: float) -> None:
        self.batcher = Batcher(sink, debounce_s)
        self.observer = Observer()
        self.roots = roots
        self.error: str | None = None

    def start(self) -> bool:
        """Start watching; False (with :attr:`error` set) when the OS refuses (inotify limits)."""
        handler = _Handler(self.batcher)
        try:
            for root in self.roots:
                self.observer.schedule(handler, root, recursive=True)
            self.observer.start()
        except OSError as exc:
            self.error = f"cannot watch the workspace ({exc}); changes on disk are seen only " \
                         "through the editor"
            log.warning("context index: %s", self.error)
            return False
        return True

    def stop(self) -> None:
        try:
            if self.observer.is_alive():
                self.observer.stop()
                self.observer.join(timeout=5)
        finally:
            self.batcher.stop()
