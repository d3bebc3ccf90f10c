"""Repository context: the workspace files a completion carries, chosen from the import graph.

Plain modules (no language-server imports): ``model/`` reuses the graph, the selection and the
packing code. By responsibility:

* the workspace: ``workspace`` (every root, the lock, the background build and watch thread),
  ``watch`` (watchdog batches), ``root`` (one root's index, put together from the parts below);
* what may be read: ``filters`` (ignored, secret, binary, oversized, out-of-root), ``scan``
  (walking a root), ``gate`` (the read gate every prompt text passes);
* keeping it current: ``build`` (the first scan and parse), ``refresh`` (changed paths),
  ``overlay`` (open editor buffers win over the disk);
* the import graph: ``graph``, ``tree`` and the per-language resolvers in ``imports/``;
* choosing context: ``choose`` (the one selection function, also used by training),
  ``root_select`` (a root's imports and its selection cache), ``selection`` (ranking and
  order), ``pairing`` (test partners), ``outline`` and ``packing`` (whole files or outlines in
  a token budget).
"""

from .build import IndexProgress
from .graph import DependencyGraph
from .selection import Candidate, ContextRow, ContextSelection, layout, rank
from .workspace import IndexStats, WorkspaceIndex

__all__ = ["Candidate", "ContextRow", "ContextSelection", "DependencyGraph", "IndexProgress",
           "IndexStats", "WorkspaceIndex", "layout", "rank"]
