"""Post-processors: suffix_overlap, bracket_balance, trailing_whitespace, empty."""

from __future__ import annotations

import pytest

from lsp_server.completion.rules import POST_PROCESSORS, SuggestionContext


def ctx(prefix: str, suffix: str = "", language: str = "python",
        single_line: bool = False) -> SuggestionContext:
    return SuggestionContext(prefix, suffix, language, single_line)


def overlap(text: str, c: SuggestionContext) -> str:
    return POST_PROCESSORS["suffix_overlap"].apply(text, c)


def balance(text: str, c: SuggestionContext) -> str:
    return POST_PROCESSORS["bracket_balance"].apply(text, c)


# --- suffix_overlap: within the line ------------------------------------------------------

@pytest.mark.parametrize("prefix, suffix, text, expected", [
    ("print(", ")", "foo(a, b))", "foo(a, b)"),          # duplicate closer
    ("foo(", "b)", "a, b", "a, "),                         # duplicate word
    ("x = scale(", ") + offset", "v) + offset", "v"),     # a duplicate run of tokens
    ("total = ", ";", "a + b;", "a + b"),
    ("x = \"hel", "\"", "lo\"", "lo"),                    # closes the prefix's string
    ("f(", "  )", "x )", "x"),                             # whitespace-insensitive
    ("x = ", "count", "count", ""),                        # the whole suggestion is a duplicate
])
def test_line_overlap_is_trimmed(prefix: str, suffix: str, text: str, expected: str) -> None:
    assert overlap(text, ctx(prefix, suffix, single_line=True)) == expected


@pytest.mark.parametrize("prefix, suffix, text", [
    ("print(", ")", "len(x)"),            # the ) closes the suggestion's own (
    ("print(get(", ")", "value)"),        # the ) is needed: print( stays open otherwise
    ("x = ", "s[0]", "items"),            # coincidence inside a word
    ("x = ", "bar()", "foo"),             # no overlap at all
    ("log(", "\", x)", "\"value is\""),   # the quote ends the suggestion's own string
])
def test_line_overlap_never_cuts_the_suggestions_own_content(
        prefix: str, suffix: str, text: str) -> None:
    assert overlap(text, ctx(prefix, suffix, single_line=True)) == text


# --- suffix_overlap: whole lines ----------------------------------------------------------

def test_last_line_equal_to_suffix_next_line_is_dropped() -> None:
    c = ctx("function f() {", "\n}\n", "javascript")
    assert overlap("\n  return 1;\n}", c) == "\n  return 1;"


def test_several_duplicate_lines_and_blank_lines_before_them_are_dropped() -> None:
    c = ctx("def f(a):\n    ", "\n\n    b = a * 2\n    return b\n")
    assert overlap("a += 1\n\n    b = a * 2\n    return b\n", c) == "a += 1"


def test_blank_cursor_line_suggestion_that_is_the_next_line_is_dropped() -> None:
    assert overlap("return x", ctx("def f(x):\n    ", "\n    return x\n")) == ""


def test_closing_line_of_the_suggestions_own_block_is_kept() -> None:
    # the suggestion's `}` closes its own `if`; the suffix's `}` closes the enclosing block
    c = ctx("if (a) {\n", "\n}\n", "javascript")
    text = "if (x) {\n  y();\n}"
    assert overlap(text, c) == text


def test_duplicate_lines_at_another_indentation_are_kept() -> None:
    c = ctx("def f(a):\n    ", "\n    return a\n")
    text = "if a:\n        return a"
    assert overlap(text, c) == text


# --- bracket_balance ----------------------------------------------------------------------

@pytest.mark.parametrize("language, prefix, suffix, text, expected", [
    ("python", "foo(", ")", "a, b)", "a, b"),                 # the suffix closes it
    ("python", "foo(", "\n", "a, b)", "a, b)"),               # needed
    ("python", "print(foo(", ")", "x))", "x)"),               # one needed, one duplicate
    ("python", "x = ", "\n", "a)", "a"),                       # nothing to close
    ("python", "foo(", "\n", "a]", "a"),                       # wrong type
    ("python", "foo(", "\n", "bar(a]", "bar(a"),               # wrong type for its own opener
    ("python", 'print("(', '")', 'x)")', 'x)"'),               # ( and ) in strings don't count
    ("python", 'print("(', ")", 'x)")', 'x)")'),               # …in the suffix either
    ("python", "foo(", "\n", "a)  # )", "a)  # )"),            # nor in comments
    ("python", "d = {\n    \"a\": 1,\n    ", "\n}\n", "\"b\": 2,\n}", "\"b\": 2,\n"),
    ("javascript", "function f() {\n  x = foo(", "\n}\n", "a, b);\n}", "a, b);\n"),
    ("typescript", "const s = `(${a}`;\nf(", "\n", "x)", "x)"),
    ("go", "s := `(`\nf(", ")", "x)", "x"),
    ("rust", "fn f<'a>(x: &'a str", "\n", ") -> &'a str {\n    x\n}", ") -> &'a str {\n    x\n}"),
    ("rust", "let c = '(';\ng(", ")", "c)", "c"),
    ("c", "char c = '{';\nint f(", "\n", "void) {\n}", "void) {\n}"),
    ("c", "int f(void) {\n  return 1;\n", "\n}\n", "}", ""),
    ("lua", "s = [[ ( ]] .. f(", "\n", "x)", "x)"),
    ("lua", "-- (\nf(", ")", "x)", "x"),
])
def test_bracket_balance(language: str, prefix: str, suffix: str, text: str,
                         expected: str) -> None:
    assert balance(text, ctx(prefix, suffix, language)) == expected


def test_suffix_closers_pair_with_their_own_type() -> None:
    # the suffix's } closes the function's {; the call's ( is still open and needed
    c = ctx("function f() {\n  x = foo(", "\n}\n", "javascript")
    assert c.needed_closers == ("(",)
    assert balance("a);", c) == "a);"


def test_truncated_prefix_does_not_make_the_suffix_closers_count() -> None:
    # the prefix lost the function's `{`; the suffix's `}` then pairs with nothing
    c = ctx("    x = foo(", "\n}\n", "c")
    assert c.needed_closers == ("(",)
    assert balance("a);", c) == "a);"


def test_cursor_inside_string_reads_suggestion_as_its_continuation() -> None:
    c = ctx('f("a (', "\n")
    assert balance('b)", g(1))', c) == 'b)", g(1))'  # the first ) is in the string


# --- trailing_whitespace and empty ----------------------------------------------------------

def test_trailing_whitespace_strips_line_ends_and_final_newlines() -> None:
    c = ctx("def f():", "\n")
    assert POST_PROCESSORS["trailing_whitespace"].apply("\n    a = 1  \n\n    b\t\r\n\n  \n", c) \
        == "\n    a = 1\n\n    b"


def test_trailing_whitespace_keeps_the_separator_before_code_on_the_line() -> None:
    c = ctx("foo(", "b)", single_line=True)
    assert POST_PROCESSORS["trailing_whitespace"].apply("a, ", c) == "a, "


@pytest.mark.parametrize("text, expected", [("", ""), ("  \n\t", ""), ("\n", ""), (" x", " x")])
def test_empty(text: str, expected: str) -> None:
    assert POST_PROCESSORS["empty"].apply(text, ctx("x = ")) == expected
