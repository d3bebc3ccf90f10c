"""Languages by file extension: the one table of what a file name says about its language.

Each extension maps to its LSP languageId (the id VS Code gives the language, which editors send
with every document) and the language's line-comment marker. Everything keyed by language
derives from here: the CLI's languageId for a file (:func:`language_of`), the comment marker of
prompt context headers (:func:`line_comment`), and the import resolvers
(``lsp_server.context.imports``), which are registered by languageId. The stop rules'
``LANGUAGES`` (``lsp_server.completion.rules.languages``) is keyed by languageId as well, so an
id an editor sends and an id found here read the same.

``.m`` is Objective-C (its C-family ``#import``\\ s resolve), not MATLAB.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class FileLanguage:
    """What one extension says: the LSP languageId and the line-comment marker ("" when the
    language has none)."""

    language_id: str
    line_comment: str


def _lang(language_id: str, line_comment: str, *extensions: str) -> dict[str, FileLanguage]:
    entry = FileLanguage(language_id, line_comment)
    return dict.fromkeys(extensions, entry)


BY_EXTENSION: dict[str, FileLanguage] = {
    **_lang("python", "#", ".py", ".pyi"),
    **_lang("shellscript", "#", ".sh", ".bash", ".zsh"),
    **_lang("ruby", "#", ".rb"),
    **_lang("perl", "#", ".pl"),
    **_lang("r", "#", ".r"),
    **_lang("toml", "#", ".toml"),
    **_lang("yaml", "#", ".yaml", ".yml"),
    **_lang("cmake", "#", ".cmake"),
    **_lang("julia", "#", ".jl"),
    **_lang("elixir", "#", ".ex", ".exs"),
    **_lang("nim", "#", ".nim"),
    **_lang("powershell", "#", ".ps1"),
    **_lang("c", "//", ".c", ".h"),
    **_lang("cpp", "//", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx", ".ipp", ".inl"),
    **_lang("objective-c", "//", ".m"),
    **_lang("objective-cpp", "//", ".mm"),
    **_lang("java", "//", ".java"),
    **_lang("kotlin", "//", ".kt", ".kts"),
    **_lang("javascript", "//", ".js", ".mjs", ".cjs"),
    **_lang("javascriptreact", "//", ".jsx"),
    **_lang("typescript", "//", ".ts", ".mts", ".cts"),
    **_lang("typescriptreact", "//", ".tsx"),
    **_lang("go", "//", ".go"),
    **_lang("rust", "//", ".rs"),
    **_lang("swift", "//", ".swift"),
    **_lang("scala", "//", ".scala"),
    **_lang("csharp", "//", ".cs"),
    **_lang("dart", "//", ".dart"),
    **_lang("php", "//", ".php"),
    **_lang("zig", "//", ".zig"),
    **_lang("proto", "//", ".proto"),
    **_lang("lua", "--", ".lua"),
    **_lang("sql", "--", ".sql"),
    **_lang("haskell", "--", ".hs"),
    **_lang("elm", "--", ".elm"),
    **_lang("ada", "--", ".ada"),
    **_lang("lisp", ";;", ".lisp"),
    **_lang("clojure", ";;", ".clj", ".cljs"),
    **_lang("emacs-lisp", ";;", ".el"),
    **_lang("scheme", ";;", ".scm"),
    **_lang("vim", '"', ".vim"),
    **_lang("latex", "%", ".tex"),
    **_lang("css", "", ".css"),
}
"""Lower-case extension (with its dot) → :class:`FileLanguage`."""

DEFAULT_LINE_COMMENT = "#"
"""The marker for a file whose language is unknown or has no line comments."""


def file_language(path: str | os.PathLike[str]) -> FileLanguage | None:
    """The table's entry for ``path``'s extension (case-insensitive), None when unknown."""
    return BY_EXTENSION.get(posixpath.splitext(os.fspath(path))[1].lower())


def language_of(path: str | os.PathLike[str]) -> str:
    """The LSP languageId of a file name ("" when unknown)."""
    entry = file_language(path)
    return entry.language_id if entry else ""


def line_comment(path: str | os.PathLike[str]) -> str:
    """The line-comment marker of ``path``'s language (:data:`DEFAULT_LINE_COMMENT` when
    unknown or when the language has none)."""
    entry = file_language(path)
    return entry.line_comment if entry and entry.line_comment else DEFAULT_LINE_COMMENT
