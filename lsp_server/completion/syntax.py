"""Does the file still parse with a candidate in place? A ranking signal the model cannot see.

Python goes through the standard library's parser (``ast``); other languages through tree-sitter
grammars (the ``tree-sitter-language-pack`` wheel ships them, nothing is downloaded). The answer
is a count of syntax errors, compared between candidates for the same cursor: a file that
already has errors elsewhere (code being typed) has them for every candidate, so only a
difference ranks.
"""

from __future__ import annotations

import ast
import functools
import logging
import warnings
from typing import Any, Callable

log = logging.getLogger("codefill.completion")

#: Files longer than this (characters) are not parsed for ranking: each candidate parses the
#: whole file again, and the gain is not worth that much time.
MAX_PARSE_CHARS = 60_000

#: LSP languageId → tree-sitter-language-pack grammar (Python uses ``ast``).
GRAMMARS: dict[str, str] = {
    "javascript": "javascript", "javascriptreact": "javascript", "typescript": "typescript",
    "typescriptreact": "tsx", "go": "go", "rust": "rust", "c": "c", "cpp": "cpp",
    "java": "java", "kotlin": "kotlin", "swift": "swift", "scala": "scala", "csharp": "csharp",
    "dart": "dart", "php": "php", "ruby": "ruby", "lua": "lua", "shellscript": "bash",
    "perl": "perl", "r": "r", "julia": "julia", "elixir": "elixir", "zig": "zig",
    "haskell": "haskell", "sql": "sql", "toml": "toml", "yaml": "yaml", "css": "css",
}


def python_errors(text: str) -> int:
    """0 when ``text`` is valid Python, else 1."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences and the like
            ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 1
    return 0


@functools.lru_cache(maxsize=None)
def _parser(grammar: str) -> Any:
    """A tree-sitter parser for ``grammar`` (None when it cannot be loaded)."""
    try:
        from tree_sitter_language_pack import get_parser

        return get_parser(grammar)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - a missing grammar only loses a ranking signal
        log.debug("no tree-sitter grammar %s: %s", grammar, exc)
        return None


def tree_errors(parser: Any, text: str) -> int:
    """ERROR and MISSING nodes in the tree-sitter parse of ``text``."""
    tree = parser.parse(text.encode("utf-8", errors="replace"))
    count, stack = 0, [tree.root_node]
    while stack:
        node = stack.pop()
        if not node.has_error:
            continue
        count += node.is_error or node.is_missing
        stack.extend(node.children)
    return count


def error_counter(language: str) -> Callable[[str], int] | None:
    """A function counting the syntax errors of a whole file in ``language`` (None: unknown)."""
    if language == "python":
        return python_errors
    grammar = GRAMMARS.get(language)
    parser = _parser(grammar) if grammar else None
    if parser is None:
        return None
    return functools.partial(tree_errors, parser)


def syntax_errors(language: str, prefix: str, texts: list[str], suffix: str
                  ) -> list[int | None]:
    """Syntax errors of ``prefix + text + suffix`` for each text; None each when the language
    has no parser here or the file is too long to parse per candidate."""
    count = error_counter(language)
    if count is None or len(prefix) + len(suffix) > MAX_PARSE_CHARS:
        return [None] * len(texts)
    return [count(prefix + text + suffix) for text in texts]
