"""User-facing errors: one line naming the problem and the fix."""

from __future__ import annotations


class CodefillError(Exception):
    """An error caused by input or environment, reported without a traceback.

    ``problem`` says what is wrong (with the offending value), ``fix`` what to do about it.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} — {self.fix}" if self.fix else self.problem


class ModelError(CodefillError):
    """The model file is missing, unreadable, not GGUF, truncated or unsupported."""


class TemplateError(CodefillError):
    """An unknown FIM template name or a template the model cannot serve."""


class PositionError(CodefillError):
    """A cursor position outside the document."""
