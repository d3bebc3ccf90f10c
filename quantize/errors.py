"""The error type of the quantize package: a :class:`CodefillError`, so the CLI prints one line."""

from __future__ import annotations

from lsp_server.errors import CodefillError


class QuantizeError(CodefillError):
    """Bad checkpoint, unsupported architecture, unusable output path, or a failed quantization."""
