"""Where codefill keeps files: its cache (the embedded model, pulled models) and the user's own
models folder, after the XDG base directory spec."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def cache_dir() -> Path:
    """codefill's cache directory ($XDG_CACHE_HOME/codefill, default ~/.cache/codefill)."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "codefill"


def models_dir() -> Path:
    """Where `codefill models` looks for the user's own GGUF files."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "codefill" / "models"
