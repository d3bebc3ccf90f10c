"""The index of one workspace root: its files, import graph and caches.

:class:`RootIndex` puts together the parts, each in its own module:

- :mod:`.gate`: what may be read (path rules, content rules, symlinks);
- :mod:`.build`: the initial scan and parse;
- :mod:`.refresh`: incremental updates from the disk;
- :mod:`.overlay`: reads through the open editor buffers, which win over the disk;
- :mod:`.root_select`: selection for a file of the root, with its cache.
"""

from __future__ import annotations

from ..config import ContextConfig
from .build import InitialBuild
from .gate import ReadGate
from .graph import DependencyGraph
from .overlay import BufferOverlay
from .refresh import Refresh
from .root_select import CachedSelection
from .scan import FileStat


class RootIndex(InitialBuild, Refresh, BufferOverlay, CachedSelection):
    """Files, graph and caches of one workspace root. Not thread-safe: the owner locks."""

    def __init__(self, root: str, config: ContextConfig, name: str) -> None:
        BufferOverlay.__init__(self)
        CachedSelection.__init__(self)
        self.gate = ReadGate(root, config)
        self.root = self.gate.root
        self.name = name
        self.graph = DependencyGraph(self.read)
        self.stats: dict[str, FileStat] = {}
        """Indexed files on disk: rel → size and mtime at the last scan or refresh."""
