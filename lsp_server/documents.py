"""Reading source files for completion and turning cursor positions into offsets.

Positions on the command line are 1-based lines and 1-based columns counted in characters
(Unicode code points), like compiler messages (`file:line:col`); column = length + 1 is the end
of the line.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CodefillError, PositionError


def read_source(path: str | Path) -> str:
    """The text of a source file; binary files and unreadable paths raise CodefillError."""
    p = Path(path)
    if not p.exists():
        raise CodefillError(f"file not found: {p}", "check the path")
    if p.is_dir():
        raise CodefillError(f"{p} is a directory", "pass a source file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CodefillError(f"cannot read {p}: {exc.strerror or exc}",
                            "check the file's permissions") from None
    if b"\0" in data[:8192]:
        raise CodefillError(f"{p} looks like a binary file (it contains NUL bytes)",
                            "complete in a text source file")
    # Invalid UTF-8 becomes U+FFFD in the prompt; the file itself is never written.
    return data.decode("utf-8", errors="replace")


def split_at(text: str, line: int, col: int, *, base: int = 1, name: str = "the file"
             ) -> tuple[str, str]:
    """(prefix, suffix) of ``text`` around the cursor at ``line``:``col``."""
    lines = text.split("\n")
    n = len(lines)
    if line < base or line - base >= n:
        raise PositionError(f"line {line} is outside {name}, which has {n} line(s)",
                            f"lines are {base}-based: use --line {base}..{n - 1 + base}")
    row = line - base
    length = len(lines[row].rstrip("\r"))
    if col < base or col - base > length:
        raise PositionError(f"column {col} is outside line {line}, which has {length} "
                            f"character(s)",
                            f"columns are {base}-based: use --col {base}..{length + base}")
    offset = sum(len(x) + 1 for x in lines[:row]) + (col - base)
    return text[:offset], text[offset:]
