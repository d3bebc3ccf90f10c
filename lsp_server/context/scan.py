"""Walking a workspace root: the files that pass the filters, with their size and mtime.

Iterative (no recursion limit on deep trees), never follows a symlink out of the root or into a
directory it has already visited (loops), and treats every OS error as "skip this entry".
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
from dataclasses import dataclass
from typing import Callable, Iterator

from .filters import IgnoreRules, ignored_dir_name, is_binary_name, is_secret_name

log = logging.getLogger("codefill.context")

MAX_DEPTH = 128


@dataclass(frozen=True)
class FileStat:
    rel: str
    """Root-relative path with "/" separators."""
    size: int
    mtime_ns: int


@dataclass
class ScanLimits:
    max_file_bytes: int
    max_files: int


def inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def accept_file_name(name: str) -> bool:
    """File-name rules that need no I/O."""
    return not is_secret_name(name) and not is_binary_name(name)


class Scanner:
    """Walks one root (or a subtree of it) applying the built-in, gitignore and size rules."""

    def __init__(self, root: str, rules: IgnoreRules, limits: ScanLimits) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.rules = rules
        self.limits = limits
        self.skipped: dict[str, int] = {}
        """Reason → count of skipped entries (for the index's statistics)."""

    def _skip(self, reason: str, rel: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        log.debug("context index: skip %s (%s)", rel, reason)

    def stat_file(self, rel: str) -> FileStat | None:
        """The entry for one file if it passes every rule (its directories are not checked)."""
        path = os.path.join(self.root, rel)
        name = rel.rsplit("/", 1)[-1]
        if not accept_file_name(name):
            self._skip("name", rel)
            return None
        try:
            st = os.stat(path)  # follows symlinks: the target's type and size count
            if os.path.islink(path) and not inside(os.path.realpath(path), self.real_root):
                self._skip("symlink out of root", rel)
                return None
        except OSError:
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        if st.st_size > self.limits.max_file_bytes:
            self._skip("size", rel)
            return None
        if self.rules.ignored(rel, False):
            self._skip("gitignore", rel)
            return None
        return FileStat(rel, st.st_size, st.st_mtime_ns)

    def walk(self, start: str = "", should_stop: Callable[[], bool] = lambda: False
             ) -> Iterator[FileStat]:
        """Files under ``start`` (root-relative directory, "" for the whole root)."""
        visited: set[tuple[int, int]] = set()
        stack: list[tuple[str, int]] = [(start, 0)]
        count = 0
        while stack:
            if should_stop():
                return
            rel_dir, depth = stack.pop()
            abs_dir = os.path.join(self.root, rel_dir) if rel_dir else self.root
            try:
                st = os.stat(abs_dir)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in visited:  # a symlink loop or a second path to the same directory
                self._skip("directory loop", rel_dir)
                continue
            visited.add(key)
            if os.path.exists(os.path.join(abs_dir, "pyvenv.cfg")):
                self._skip("virtualenv", rel_dir)
                continue
            self.rules.load_dir(self.root, rel_dir)
            try:
                with os.scandir(abs_dir) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:  # permission denied, deleted meanwhile
                log.debug("context index: cannot list %s: %s", abs_dir, exc)
                continue
            subdirs: list[str] = []
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    is_link = entry.is_symlink()
                    is_dir = entry.is_dir()  # follows symlinks
                except OSError:
                    continue
                if is_link and not inside(os.path.realpath(entry.path), self.real_root):
                    self._skip("symlink out of root", rel)
                    continue
                if is_dir:
                    if ignored_dir_name(entry.name) or self.rules.ignored(rel, True):
                        self._skip("ignored directory", rel)
                    elif depth + 1 > MAX_DEPTH:
                        self._skip("too deep", rel)
                    else:
                        subdirs.append(rel)
                    continue
                if not accept_file_name(entry.name):
                    self._skip("name", rel)
                    continue
                try:
                    fst = entry.stat()
                except OSError:
                    continue
                if not stat_mod.S_ISREG(fst.st_mode):
                    continue
                if fst.st_size > self.limits.max_file_bytes:
                    self._skip("size", rel)
                    continue
                if self.rules.ignored(rel, False):
                    self._skip("gitignore", rel)
                    continue
                count += 1
                if count > self.limits.max_files:
                    self._skip("file limit", rel)
                    log.warning("context index: more than %d files under %s; the rest is not "
                                "indexed (raise context.max_index_files)", self.limits.max_files,
                                self.root)
                    return
                yield FileStat(rel, fst.st_size, fst.st_mtime_ns)
            # Reverse so that the stack pops directories in name order (deterministic scans).
            stack.extend((d, depth + 1) for d in reversed(subdirs))
