"""The rules' lexer: brackets outside strings and comments, per language, resumable."""

from __future__ import annotations

import pytest

from lsp_server.completion.rules.languages import GENERIC, LANGUAGES, spec_for
from lsp_server.completion.rules.lexer import (
    lexer_for, open_brackets, strip_comments, unmatched_closers)


def brackets(text: str, language: str) -> str:
    return "".join(ch for _, ch in lexer_for(spec_for(language)).scan(text).brackets)


@pytest.mark.parametrize("language, text, expected", [
    ("python", 'f("(", x)  # )', "()"),
    ("python", "s = '''(\n[''' + g(", "("),
    ("python", r'x = "a\"(" + y[0]', "[]"),
    ("javascript", "f(`(${a}`, /* ) */ b) // ]", "()"),
    ("typescript", "const s = '{'; g[", "["),
    ("go", "x := `(\n]` + f(", "("),
    ("go", "r := '(' ; f(r)", "()"),
    ("rust", "fn f<'a>(x: &'a str) { let c = '('; }", "(){}"),
    ("rust", r"let c = '\''; g(", "("),
    ("c", '#include <x.h>\nint f(char c = \'{\') { /* ( */ }', "(){}"),
    ("lua", "x = [[ ( ]] --[[ { ]] -- [\nf(", "("),
    ("lua", "s = 'a(' .. \"b[\" .. t[1]", "[]"),
])
def test_brackets_outside_strings_and_comments(language: str, text: str, expected: str) -> None:
    assert brackets(text, language) == expected


@pytest.mark.parametrize("language, text, kind, multiline", [
    ("python", 'x = "abc', "string", False),
    ("python", 'def f():\n    """Doc\n    more', "string", True),
    ("python", "x = 1  # note (", "comment", False),
    ("c", "int x; /* start\n of (", "comment", True),
    ("go", "s := `raw\n", "string", True),
    ("lua", "--[[ long\n", "comment", True),
])
def test_state_at_end(language: str, text: str, kind: str, multiline: bool) -> None:
    spec = spec_for(language)
    state = lexer_for(spec).scan(text).state
    assert state is not None
    assert (spec.delimiters[state].kind, spec.delimiters[state].multiline) == (kind, multiline)


def test_unterminated_single_line_string_ends_at_newline() -> None:
    s = lexer_for(spec_for("python")).scan('x = "abc\nf(')
    assert s.state is None and [ch for _, ch in s.brackets] == ["("]


def test_rust_lifetime_is_not_an_open_string() -> None:
    assert lexer_for(spec_for("rust")).scan("impl<'a> Foo<'a> for").state is None


def test_resume_inside_string() -> None:
    spec = spec_for("python")
    lex = lexer_for(spec)
    state = lex.scan('print("a (').state
    resumed = lex.scan('b)") + g(x)', state)
    assert [(p, ch) for p, ch in resumed.brackets] == [(3, ")"), (8, "("), (10, ")")]
    assert resumed.spans[0][0] == -1  # the string began before the scanned text


def test_resume_inside_line_comment_stops_at_newline() -> None:
    lex = lexer_for(spec_for("javascript"))
    state = lex.scan("x(); // see (").state
    assert [ch for _, ch in lex.scan("note)\ny(", state).brackets] == ["("]


def test_open_and_unmatched() -> None:
    s = lexer_for(GENERIC).scan(")] { f(a[0]")
    assert [ch for _, ch in open_brackets(s.brackets)] == ["{", "("]
    assert [ch for _, ch in unmatched_closers(s.brackets)] == [")", "]"]


def test_strip_comments_keeps_strings() -> None:
    assert strip_comments('x = "#" + y  # (', spec_for("python")).rstrip() == 'x = "#" + y'
    assert strip_comments("a /* b */ c // d", spec_for("c")) == "a  c "


def test_unknown_language_is_generic_and_ids_are_case_insensitive() -> None:
    assert spec_for("brainfuck") is GENERIC
    assert spec_for("Python") is LANGUAGES["python"]


def test_prefix_window_starts_at_a_line_and_bounds_the_scan() -> None:
    from lsp_server.completion.rules import decide_single_line
    from lsp_server.completion.rules.lexer import SCAN_WINDOW, prefix_window
    far = "f(\n" + "x = 1\n" * (SCAN_WINDOW // 4) + "y = 2"
    window = prefix_window(far)
    assert len(window) <= SCAN_WINDOW and window.startswith("x = 1\n") and window.endswith("y = 2")
    # the `(` opened beyond the window is out of view: the line reads as a plain assignment
    assert decide_single_line(far, "\n", "python") is True
    assert decide_single_line("f(\nx = 1\ny = 2", "\n", "python") is False


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_language_table_compiles_and_runs(language: str) -> None:
    from lsp_server.completion.rules import SuggestionContext, decide_single_line, first_cut
    prefix = 'x = f("a", [1, 2]) # c\nif y {'
    assert lexer_for(spec_for(language)).scan(prefix).brackets
    ctx = SuggestionContext(prefix, "\n}", language, decide_single_line(prefix, "\n}", language))
    assert first_cut("\n  a\n  a\n  a\nz", ctx) is not None
