"""What the rules need to know about a language, as lookup tables keyed by LSP languageId.

Only lexical and layout facts live here (comment and string delimiters, how a line opens, closes
or continues a block, which first words make a one-line statement); the rules read them and never
branch on a language name. A languageId missing from the table gets :data:`GENERIC`, a C-like
guess. Languages share a family's table where their lexical syntax is close enough for
brackets and layout (Kotlin, Swift, C#, Dart and PHP read as Java; JSON and Vue as JavaScript);
their own string forms (Kotlin and Swift triple quotes, C# ``@"…"``) are not modelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BRACKETS: dict[str, str] = {"(": ")", "[": "]", "{": "}"}
"""Opening bracket → closing bracket, the same in every language handled here."""
OPENER_OF: dict[str, str] = {c: o for o, c in BRACKETS.items()}


@dataclass(frozen=True)
class Delimited:
    """A comment or string syntax: ``open`` … ``close``.

    ``close`` "" means a line comment (it ends at the newline, which it does not consume).
    ``body`` overrides the generated content pattern; such a literal has no unterminated form
    (used for Rust char literals, so that a lifetime ``'a`` is not taken for an open string).
    """

    kind: str  # "comment" | "string"
    open: str
    close: str = ""
    escapes: bool = True
    multiline: bool = False
    body: str | None = None


def _line(marker: str) -> Delimited:
    return Delimited("comment", marker, multiline=False, escapes=False)


def _block(open_: str, close: str) -> Delimited:
    return Delimited("comment", open_, close, escapes=False, multiline=True)


def _str(q: str, *, multiline: bool = False, escapes: bool = True) -> Delimited:
    return Delimited("string", q, q, escapes=escapes, multiline=multiline)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True, eq=False)
class LangSpec:
    """Lexical and block-layout facts for one family of languages (hashed by identity: specs
    are module constants and key the lexer caches)."""

    name: str
    delimiters: tuple[Delimited, ...]
    """Comments and strings; earlier entries win when two openers start at the same place."""
    block_open: re.Pattern[str]
    """Matches the code of a line (comments removed, stripped) that a deeper block follows."""
    block_close: re.Pattern[str]
    """Matches a stripped line that closes the block opened at its indentation (``}``, ``end``)."""
    block_continue: re.Pattern[str]
    """Matches a stripped line at the opener's indentation that keeps the block chain going
    (``} else {``, ``else:``, ``case 1:``)."""
    block_words: frozenset[str] = frozenset()
    """First words that can start a closing or continuing line; a partial line whose first word
    could still become one of them is not judged until it is complete."""
    indent_exempt: re.Pattern[str] | None = None
    """Lines whose indentation carries no scope (C preprocessor lines sit at column 0)."""
    one_line_words: frozenset[str] = frozenset()
    """First words of statements that end with their line (``import``, ``return``…)."""
    header_words: frozenset[str] = frozenset()
    """Words that start a block header (``def``, ``if``, ``function``…)."""
    inline_block_words: frozenset[str] = field(
        default=frozenset({"function", "fn", "func", "lambda", "class", "do"}))
    """Words in an assignment's right-hand side that start a multi-line value."""


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_CLOSE_BRACKET_LINE = r"^[)\]}]"
_NEVER = _rx(r"(?!)")
_C_LIKE_OPEN = _rx(r"(?:[(\[{]|=>)$")
_C_LIKE_CONTINUE = _rx(r"^(?:[)\]}].*(?:[(\[{]|=>)$|(?:case|default)\b)")
_C_COMMENTS = (_line("//"), _block("/*", "*/"))
_C_HEADERS = _words("if else for while do switch try catch finally function class struct "
                    "interface enum union namespace impl trait fn func match loop unsafe "
                    "select async module")


def _c_like(name: str, strings: tuple[Delimited, ...], one_line: str,
            indent_exempt: str | None = None) -> LangSpec:
    return LangSpec(
        name=name, delimiters=_C_COMMENTS + strings, block_open=_C_LIKE_OPEN,
        block_close=_rx(_CLOSE_BRACKET_LINE), block_continue=_C_LIKE_CONTINUE,
        block_words=_words("case default"),
        indent_exempt=_rx(indent_exempt) if indent_exempt else None,
        one_line_words=_words(one_line), header_words=_C_HEADERS)


PYTHON = LangSpec(
    name="python",
    delimiters=(_line("#"), _str('"""', multiline=True), _str("'''", multiline=True),
                _str('"'), _str("'")),
    block_open=_rx(r"[:(\[{\\]$"),
    block_close=_rx(_CLOSE_BRACKET_LINE),
    block_continue=_rx(r"^(?:elif|else|except|finally)\b"),
    block_words=_words("elif else except finally"),
    one_line_words=_words("import from return raise assert del global nonlocal pass break "
                          "continue yield await"),
    header_words=_words("def class if elif else for while with try except finally async match "
                        "case"),
    inline_block_words=frozenset(),  # a lambda is one expression; brackets are caught earlier
)

C = _c_like("c", (_str('"'), _str("'")),
            "#include #define #undef #pragma #import #error return goto break continue "
            "typedef using", indent_exempt=r"^\s*#")
JAVASCRIPT = _c_like("javascript", (_str('"'), _str("'"), _str("`", multiline=True)),
                     "import export return throw break continue yield await require")
GO = _c_like("go", (_str('"'), _str("'"), _str("`", multiline=True, escapes=False)),
             "import package return go defer break continue goto fallthrough var const")
RUST = _c_like("rust", (
    _str('"'),
    # A char literal is closed on the spot; a lone quote is a lifetime ('a), not a string.
    Delimited("string", "'", "'",
              body=r"(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])"),
), "use mod return break continue extern type let")
JAVA = _c_like("java", (_str('"'), _str("'")),
               "import package return throw break continue")

LUA = LangSpec(
    name="lua",
    delimiters=(_block("--[[", "]]"), _line("--"),
                Delimited("string", "[[", "]]", escapes=False, multiline=True),
                _str('"'), _str("'")),
    block_open=_rx(r"(?:\bthen|\bdo|\belse|\brepeat|[(\[{]|\bfunction\b.*\))$"),
    block_close=_rx(r"^(?:end|until)\b|" + _CLOSE_BRACKET_LINE),
    block_continue=_rx(r"^(?:else|elseif)\b"),
    block_words=_words("else elseif end until"),
    one_line_words=_words("return break goto require"),
    header_words=_words("function if for while repeat do"),
)

RUBY = LangSpec(
    name="ruby",
    delimiters=(_line("#"), _str('"'), _str("'")),
    block_open=_rx(r"(?:\bdo(?:\s*\|[^|]*\|)?|\bthen|[(\[{|]|"
                   r"^(?:def|class|module|if|unless|while|until|case|begin|for)\b.*)$"),
    block_close=_rx(r"^end\b|" + _CLOSE_BRACKET_LINE),
    block_continue=_rx(r"^(?:else|elsif|when|rescue|ensure)\b"),
    block_words=_words("else elsif when rescue ensure end"),
    one_line_words=_words("require require_relative return raise break next include"),
    header_words=_words("def class module if unless while until case begin for do"),
)

SHELL = LangSpec(
    name="shellscript",
    delimiters=(_line("#"), _str('"', multiline=True), _str("'", multiline=True, escapes=False)),
    block_open=_rx(r"(?:\bthen|\bdo|\belse|\{|\(|\bin)$"),
    block_close=_rx(r"^(?:fi|done|esac)\b|" + _CLOSE_BRACKET_LINE),
    block_continue=_rx(r"^(?:else|elif)\b"),
    block_words=_words("else elif fi done esac"),
    one_line_words=_words("export source return exit local readonly echo"),
    header_words=_words("if for while until case function select"),
)

SQL = LangSpec(
    name="sql",
    delimiters=(_line("--"), _block("/*", "*/"), _str("'"), _str('"')),
    block_open=_rx(r"[(\[{]$"),
    block_close=_rx(_CLOSE_BRACKET_LINE),
    block_continue=_NEVER,
)

CSS = LangSpec(
    name="css",
    delimiters=(_block("/*", "*/"), _str('"'), _str("'")),
    block_open=_rx(r"[(\[{]$"),
    block_close=_rx(_CLOSE_BRACKET_LINE),
    block_continue=_rx(r"^[)\]}].*[(\[{]$"),
)

HASH_BRACES = LangSpec(  # YAML, TOML, R, Julia, Elixir, Perl, Nim: `#` comments, brackets
    name="hash",
    delimiters=(_line("#"), _str('"'), _str("'")),
    block_open=_rx(r"[:(\[{]$"),
    block_close=_rx(_CLOSE_BRACKET_LINE),
    block_continue=_rx(r"^[)\]}].*[(\[{]$"),
)

GENERIC = _c_like("generic", (_str('"'), _str("'"), _str("`", multiline=True)), "return")
"""Unknown languages: C-like comments and strings, brackets delimit blocks."""

LANGUAGES: dict[str, LangSpec] = {
    "python": PYTHON,
    **dict.fromkeys(("c", "cpp", "cuda-cpp", "objective-c", "objective-cpp", "hlsl", "glsl"), C),
    **dict.fromkeys(("javascript", "javascriptreact", "typescript", "typescriptreact", "jsx",
                     "tsx", "json", "jsonc", "vue", "svelte"), JAVASCRIPT),
    **dict.fromkeys(("java", "kotlin", "scala", "csharp", "swift", "dart", "php", "groovy"),
                    JAVA),
    "go": GO,
    "rust": RUST,
    "zig": _c_like("zig", (_str('"'), _str("'")), "return break continue const var"),
    "lua": LUA,
    "ruby": RUBY,
    **dict.fromkeys(("shellscript", "bash", "sh", "zsh", "fish"), SHELL),
    "sql": SQL,
    "css": CSS,
    **dict.fromkeys(("scss", "less"), LangSpec(
        name="scss", delimiters=(_line("//"),) + CSS.delimiters,
        block_open=CSS.block_open, block_close=CSS.block_close,
        block_continue=CSS.block_continue)),
    **dict.fromkeys(("yaml", "toml", "r", "julia", "elixir", "perl", "nim"), HASH_BRACES),
}


def spec_for(language: str) -> LangSpec:
    """The spec for an LSP languageId (case-insensitive); :data:`GENERIC` when unknown."""
    return LANGUAGES.get(language.lower(), GENERIC)
