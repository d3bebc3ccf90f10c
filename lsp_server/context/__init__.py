"""Repository context: the workspace files a completion carries, chosen from the import graph.

Plain modules (no language-server imports): ``model/`` reuses the graph and packing code.
"""

from .build import IndexProgress
from .graph import DependencyGraph
from .selection import Candidate, ContextRow, ContextSelection, layout, rank
from .workspace import IndexStats, WorkspaceIndex, context_budget

__all__ = ["Candidate", "ContextRow", "ContextSelection", "DependencyGraph", "IndexProgress",
           "IndexStats", "WorkspaceIndex", "context_budget", "layout", "rank"]
