"""Repository context: the workspace files a completion carries, chosen from the import graph.

Plain modules (no language-server imports): ``model/`` reuses the graph and packing code.
"""

from .graph import DependencyGraph
from .index import IndexProgress, IndexStats, WorkspaceIndex, context_budget
from .selection import Candidate, ContextRow, ContextSelection, layout, rank

__all__ = ["Candidate", "ContextRow", "ContextSelection", "DependencyGraph", "IndexProgress",
           "IndexStats", "WorkspaceIndex", "context_budget", "layout", "rank"]
