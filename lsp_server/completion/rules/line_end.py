"""Stop rule ``line_end``: in single-line mode the suggestion ends at its first line break.

A suggestion that *begins* with a line break (the model wants to start a new line after the
cursor's line) is cut to "" — a new line is exactly what single-line mode excludes — and the
``empty`` post-processor then drops it. In multi-line mode the rule does nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import SuggestionContext

_BREAK = re.compile(r"[\r\n]")


@dataclass(frozen=True)
class LineEnd:
    name: str = "line_end"

    def cut(self, text: str, ctx: SuggestionContext) -> int | None:
        if not ctx.single_line:
            return None
        m = _BREAK.search(text)
        return m.start() if m else None
