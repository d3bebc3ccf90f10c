"""Adaptive debounce: how long a request waits before it asks the model.

While the user types fast, wait about one typical keystroke interval, so work the next
keystroke would supersede is never started; after a pause, barely wait.
"""

from __future__ import annotations

import time

from ..config import CompletionConfig

TYPING_GAP_S = 1.5
"""Intervals between requests longer than this are pauses, not typing speed."""


class TypingPace:
    """The typing speed per document, as an exponential moving average of request intervals."""

    def __init__(self) -> None:
        self._last_request_at: dict[str, float] = {}
        self._interval_ema: dict[str, float] = {}

    def note(self, uri: str) -> None:
        """A request for ``uri`` arrived now."""
        now = time.monotonic()
        last = self._last_request_at.get(uri)
        self._last_request_at[uri] = now
        if last is not None and now - last < TYPING_GAP_S:
            prev = self._interval_ema.get(uri, now - last)
            self._interval_ema[uri] = 0.7 * prev + 0.3 * (now - last)

    def debounce(self, uri: str, cc: CompletionConfig) -> float:
        """Seconds to wait, between ``debounce_min_ms`` and ``debounce_max_ms``."""
        lo, hi = cc.debounce_min_ms / 1000, max(cc.debounce_min_ms, cc.debounce_max_ms) / 1000
        ema = self._interval_ema.get(uri)
        if ema is None or ema > 2 * hi:
            return lo
        return min(hi, max(lo, ema * 1.1))

    def forget(self, uri: str) -> None:
        self._last_request_at.pop(uri, None)
        self._interval_ema.pop(uri, None)
