"""The context index's public names, where callers have always imported them from.

The index is split by responsibility: :mod:`.workspace` (all roots, threading, the language
server's API), :mod:`.root` (one root, put together from :mod:`.gate`, :mod:`.build`,
:mod:`.refresh`, :mod:`.overlay` and :mod:`.root_select`) and :mod:`.choose` (the selection
the daemon and training share).
"""

from .build import IndexProgress
from .root import RootIndex
from .workspace import IndexStats, WorkspaceIndex

__all__ = ["IndexProgress", "IndexStats", "RootIndex", "WorkspaceIndex"]
