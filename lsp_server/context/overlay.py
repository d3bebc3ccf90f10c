"""The buffer overlay of a root: open editor buffers win over the disk.

Every text the index uses (to parse imports, to fill a prompt) is read through
:meth:`BufferOverlay.read`: an open buffer's text unless it holds a secret, else the disk
through the read gate. Texts and outlines are memoised by version — a buffer's sequence number,
or a file's mtime and size — so an unchanged file is read and outlined once. Opening, editing
and closing a buffer update the graph; closing hands the file back to the disk.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable

from .choose import file_outline
from .filters import has_secret_content
from .gate import ReadGate
from .graph import DependencyGraph
from .imports import resolver_for
from .outline import OutlineItem
from .scan import FileStat


class LRU:
    """A small least-recently-used map."""

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


class BufferOverlay:
    """Part of :class:`~.root.RootIndex`: reading texts, and the editor's open buffers.

    Uses the index's ``gate``, ``graph`` and ``stats``; ``clear_buffer`` hands a closed file
    back to the disk through the index's ``upsert`` and ``drop_tree`` (:mod:`.refresh`).
    """

    gate: ReadGate
    graph: DependencyGraph
    stats: dict[str, FileStat]
    upsert: Callable[..., None]
    drop_tree: Callable[[str], None]

    def __init__(self) -> None:
        self.buffers: dict[str, tuple[int, str]] = {}
        """Open editor buffers: rel → (buffer version, text)."""
        self._buffer_seq = 0
        self._texts = LRU(512)
        self._outlines = LRU(512)

    def version(self, rel: str) -> Hashable:
        buf = self.buffers.get(rel)
        if buf is not None:
            return ("buffer", buf[0])
        st = self.stats.get(rel)
        return (st.mtime_ns, st.size) if st is not None else None

    def read(self, rel: str) -> str | None:
        buf = self.buffers.get(rel)
        if buf is not None:
            return None if has_secret_content(buf[1]) else buf[1]
        key = (rel, self.version(rel))
        hit = self._texts.get(key)
        if isinstance(hit, str):
            return hit
        text = self.gate.read_disk(rel)
        if text is not None and key[1] is not None:
            self._texts.put(key, text)
        return text

    def outline_of(self, rel: str, text: str) -> list[OutlineItem]:
        key = (rel, self.version(rel))
        hit = self._outlines.get(key)
        if isinstance(hit, list):
            return hit
        items = file_outline(rel, text)
        self._outlines.put(key, items)
        return items

    def set_buffer(self, rel: str, text: str) -> None:
        # A document opened through a symlink that leaves the root is the user's to edit, but
        # its text must not become context for other files (it lives outside the workspace).
        if not self.gate.contains(rel):
            return
        old = self.buffers.get(rel)
        if old is not None and old[1] == text:
            return
        self._buffer_seq += 1
        self.buffers[rel] = (self._buffer_seq, text)
        if self.gate.indexable(rel):
            self.graph.update(rel, text if resolver_for(rel) else None)

    def clear_buffer(self, rel: str) -> None:
        if self.buffers.pop(rel, None) is None:
            return
        st = self.gate.scanner.stat_file(rel) if self.gate.indexable(rel) else None
        if st is None:
            self.drop_tree(rel)
            self.graph.remove(rel)
        else:
            self.upsert(st, force=True)
