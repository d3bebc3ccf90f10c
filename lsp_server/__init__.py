"""codefill: a local, offline code-completion daemon that speaks LSP."""

__version__ = "0.1.0"
