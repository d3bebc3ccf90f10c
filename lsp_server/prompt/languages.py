"""Line-comment syntax by file extension, for context headers in templates without file tokens."""

from __future__ import annotations

from pathlib import PurePath

_LINE_COMMENT: dict[str, str] = {
    **dict.fromkeys((".py", ".pyi", ".sh", ".bash", ".zsh", ".rb", ".pl", ".r", ".toml",
                     ".yaml", ".yml", ".cmake", ".jl", ".ex", ".exs", ".nim", ".ps1"), "#"),
    **dict.fromkeys((".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".java", ".kt", ".kts",
                     ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".go", ".rs", ".swift",
                     ".scala", ".cs", ".dart", ".php", ".zig", ".proto"), "//"),
    **dict.fromkeys((".lua", ".sql", ".hs", ".elm", ".ada"), "--"),
    **dict.fromkeys((".lisp", ".clj", ".cljs", ".el", ".scm"), ";;"),
    ".vim": '"',
    ".m": "%",
    ".tex": "%",
}


def line_comment(path: str) -> str:
    """The line-comment marker for ``path``'s language ("#" when unknown)."""
    return _LINE_COMMENT.get(PurePath(path).suffix.lower(), "#")
