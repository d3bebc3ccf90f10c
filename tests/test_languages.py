"""The extension table (lsp_server/languages.py) and what derives from it."""

from __future__ import annotations

from pathlib import Path

from lsp_server.completion.rules.languages import GENERIC, spec_for
from lsp_server.context.imports import BY_LANGUAGE_ID, LANGUAGES, resolver_for
from lsp_server.languages import BY_EXTENSION, language_of, line_comment


def test_language_ids_and_comments() -> None:
    assert language_of("pkg/mod.py") == "python"
    assert language_of(Path("src/App.TSX")) == "typescriptreact"
    assert language_of("lib.h") == "c" and language_of("lib.hpp") == "cpp"
    assert language_of("run.sh") == "shellscript"
    assert language_of("README") == "" and language_of("notes.txt") == ""
    assert language_of(".py") == ""  # a dotfile has no extension
    assert line_comment("a.py") == "#" and line_comment("a.rs") == "//"
    assert line_comment("a.lua") == "--" and line_comment("a.clj") == ";;"
    assert line_comment("a.vim") == '"' and line_comment("a.tex") == "%"
    assert line_comment("a.txt") == "#" and line_comment("a.css") == "#"


def test_every_extension_is_lower_case_with_its_dot() -> None:
    assert all(ext.startswith(".") and ext == ext.lower() for ext in BY_EXTENSION)


def test_import_resolvers_agree_with_the_table() -> None:
    """Every resolver serves a languageId of the table, and the extensions the resolvers were
    written for still reach them through it."""
    assert set(BY_LANGUAGE_ID) <= {e.language_id for e in BY_EXTENSION.values()}
    assert {lang for lang in BY_LANGUAGE_ID.values()} == set(LANGUAGES)
    served = {".py": "python", ".pyi": "python", ".ts": "javascript", ".tsx": "javascript",
              ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript",
              ".cjs": "javascript", ".mts": "javascript", ".cts": "javascript", ".go": "go",
              ".rs": "rust", ".java": "jvm", ".kt": "jvm", ".kts": "jvm", ".c": "c", ".h": "c",
              ".cc": "c", ".cpp": "c", ".cxx": "c", ".hpp": "c", ".hh": "c", ".hxx": "c",
              ".ipp": "c", ".inl": "c", ".m": "c", ".mm": "c"}
    for ext, name in served.items():
        lang = resolver_for("f" + ext)
        assert lang is not None and lang.name == name, ext
    assert resolver_for("x.txt") is None


def test_table_ids_with_stop_rules() -> None:
    # Every id the table gives a language with brackets or blocks has its own stop-rule spec.
    for ext in (".py", ".js", ".ts", ".go", ".rs", ".c", ".cpp", ".m", ".java", ".kt", ".lua",
                ".rb", ".sh", ".sql", ".css", ".yaml", ".toml", ".zig", ".dart"):
        assert spec_for(language_of("f" + ext)) is not GENERIC, ext
