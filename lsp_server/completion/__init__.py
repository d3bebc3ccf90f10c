"""Completion: from a cursor in a document to suggestion text (no LSP types here)."""
