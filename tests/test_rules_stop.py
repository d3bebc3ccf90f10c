"""Stop rules: line_end, indent_scope, suffix_echo, repetition.

Most cases are run the way the pipeline runs them: the suggestion grows one character at a
time (the worst case of tokenisation) and generation stops at the first cut.
"""

from __future__ import annotations

import pytest

from lsp_server.completion.rules import STOP_RULES, SuggestionContext, first_cut


def ctx(prefix: str, suffix: str = "", language: str = "python",
        single_line: bool = False) -> SuggestionContext:
    return SuggestionContext(prefix, suffix, language, single_line)


def generate(text: str, c: SuggestionContext, only: str | None = None) -> tuple[str, str | None]:
    """Stream ``text`` char by char through the stop rules (or through rule ``only``)."""
    disabled = frozenset(STOP_RULES) - {only} if only else frozenset()
    for i in range(1, len(text) + 1):
        cut = first_cut(text[:i], c, disabled)
        if cut is not None:
            return text[:cut[0]], cut[1]
    return text, None


# --- line_end ------------------------------------------------------------------------------

def test_line_end_cuts_at_first_newline_in_single_line_mode() -> None:
    c = ctx("x = foo(", ")", single_line=True)
    assert generate("a, b\n    y = 2", c, "line_end") == ("a, b", "line_end")
    assert STOP_RULES["line_end"].cut("a, b", c) is None


def test_line_end_suggestion_starting_with_newline_is_cut_to_nothing() -> None:
    c = ctx("import os", "\n", single_line=True)
    assert generate("\nimport sys", c, "line_end") == ("", "line_end")


def test_line_end_handles_carriage_return() -> None:
    assert STOP_RULES["line_end"].cut("abc\r\ndef", ctx("x = ", single_line=True)) == 3


def test_line_end_does_nothing_in_multi_line_mode() -> None:
    assert STOP_RULES["line_end"].cut("a\nb\nc", ctx("def f():")) is None


# --- indent_scope: Python ------------------------------------------------------------------

def test_python_block_opened_by_cursor_line_ends_at_dedent() -> None:
    c = ctx("class A:\n    def f(self):", "\n")
    text = "\n        x = 1\n\n        return x\n\n    def g(self):\n        pass"
    assert generate(text, c, "indent_scope") == (
        "\n        x = 1\n\n        return x", "indent_scope")


def test_python_blank_cursor_line_allows_siblings_and_stops_at_dedent() -> None:
    c = ctx("def f():\n    a = 1\n    ", "\n")
    text = "b = 2\n    if b:\n        a += b\n    return a\n\ndef g():\n"
    assert generate(text, c, "indent_scope") == (
        "b = 2\n    if b:\n        a += b\n    return a", "indent_scope")


def test_python_else_continues_the_block_but_next_statement_ends_it() -> None:
    c = ctx("def f(x):\n    if x:", "\n")
    text = "\n        a()\n    elif x > 2:\n        b()\n    else:\n        c()\n    d()\n"
    assert generate(text, c, "indent_scope") == (
        "\n        a()\n    elif x > 2:\n        b()\n    else:\n        c()", "indent_scope")


def test_python_dedent_below_cursor_line_ends_plain_scope() -> None:
    c = ctx("def f():\n    x = g(\n        1)\n    y = 2", "\n")
    # cursor line `y = 2` does not open a block: siblings stay, a dedent ends it
    assert generate("\n    z = 3\nprint(z)", c, "indent_scope") == ("\n    z = 3", "indent_scope")


def test_python_closing_bracket_line_ends_the_bracket_block() -> None:
    c = ctx("def f():\n    x = foo(", "\n")
    text = "\n        a,\n        b,\n    )\n    return x"
    assert generate(text, c, "indent_scope") == ("\n        a,\n        b,\n    )", "indent_scope")


def test_header_finished_by_the_suggestion_opens_the_block() -> None:
    c = ctx("def f(", "\n")
    assert generate("a, b):\n    return a + b\nx = 1", c, "indent_scope") == (
        "a, b):\n    return a + b", "indent_scope")


def test_call_finished_by_the_suggestion_does_not_open_a_block() -> None:
    c = ctx("def f():\n    x = foo(", "\n")
    assert generate("a, b)\n    y = 2\n", c, "indent_scope") == ("a, b)\n    y = 2\n", None)


def test_two_blank_lines_end_the_suggestion_one_does_not() -> None:
    c = ctx("x = 1\n", "")
    assert generate("y = 2\n\nz = 3\n\n\nw = 4", c, "indent_scope") == (
        "y = 2\n\nz = 3", "indent_scope")


def test_suggestion_starting_with_two_blank_lines_is_cut_to_nothing() -> None:
    assert generate("\n\n\ndef g():", ctx("    return x", "\n"), "indent_scope") == (
        "", "indent_scope")


def test_partial_line_at_base_waits_until_it_can_be_judged() -> None:
    rule = STOP_RULES["indent_scope"]
    c = ctx("if x:", "\n")
    assert rule.cut("\n    a()\nel", c) is None          # may become else / elif
    assert rule.cut("\n    a()\nelse:\n    b()\n", c) is None
    assert rule.cut("\n    a()\nre", c) == len("\n    a()")  # cannot: judged at once


def test_indent_scope_does_nothing_in_single_line_mode() -> None:
    assert STOP_RULES["indent_scope"].cut("a\nb", ctx("    x = ", single_line=True)) is None


# --- indent_scope: brace and keyword languages ----------------------------------------------

def test_javascript_closing_brace_is_kept_and_ends_the_block() -> None:
    c = ctx("function f(a) {", "\n", "javascript")
    text = "\n  return a + 1;\n}\n\nfunction g() {\n}"
    assert generate(text, c, "indent_scope") == ("\n  return a + 1;\n}", "indent_scope")


def test_typescript_else_branch_continues_the_block() -> None:
    c = ctx("  if (x) {", "\n", "typescript")
    text = "\n    a();\n  } else {\n    b();\n  }\n  c();"
    assert generate(text, c, "indent_scope") == (
        "\n    a();\n  } else {\n    b();\n  }", "indent_scope")


def test_brace_block_closed_below_the_cursor_line_is_cut() -> None:
    # inside a block (cursor after a statement): `}` at a lower indentation leaves it
    c = ctx("if (x) {\n  a();", "\n", "javascript")
    assert generate("\n  b();\n}\nfoo();", c, "indent_scope") == ("\n  b();", "indent_scope")


def test_go_case_lines_at_switch_indentation_continue() -> None:
    c = ctx("func f(x int) {\n\tswitch x {", "\n", "go")
    text = "\n\tcase 1:\n\t\ta()\n\tdefault:\n\t\tb()\n\t}\n\treturn\n}"
    assert generate(text, c, "indent_scope") == (
        "\n\tcase 1:\n\t\ta()\n\tdefault:\n\t\tb()\n\t}", "indent_scope")


def test_rust_match_arms() -> None:
    c = ctx("fn f(x: u8) -> u8 {\n    match x {", "\n", "rust")
    text = "\n        0 => {\n            1\n        }\n        _ => 2,\n    }\n}"
    assert generate(text, c, "indent_scope") == (
        "\n        0 => {\n            1\n        }\n        _ => 2,\n    }", "indent_scope")


def test_c_preprocessor_lines_do_not_end_the_scope() -> None:
    c = ctx("int f(void) {\n    ", "\n}", "c")
    text = "a();\n#ifdef DEBUG\n    log();\n#endif\n    return 0;\n}\n"
    assert generate(text, c, "indent_scope") == (
        "a();\n#ifdef DEBUG\n    log();\n#endif\n    return 0;", "indent_scope")


def test_lua_end_closes_the_function() -> None:
    c = ctx("local function f(a)", "\n", "lua")
    assert generate("\n  return a\nend\nprint(f(1))", c, "indent_scope") == (
        "\n  return a\nend", "indent_scope")


def test_lua_else_continues_if_block() -> None:
    c = ctx("if x then", "\n", "lua")
    text = "\n  a()\nelseif y then\n  b()\nelse\n  c()\nend\nd()"
    assert generate(text, c, "indent_scope") == (
        "\n  a()\nelseif y then\n  b()\nelse\n  c()\nend", "indent_scope")


# --- suffix_echo ---------------------------------------------------------------------------

def test_suffix_echo_stops_before_the_suffix_next_line() -> None:
    c = ctx("def f(a):\n    ", "\n    return result\n")
    assert generate("result = a * 2\n    return result\n", c, "suffix_echo") == (
        "result = a * 2", "suffix_echo")


def test_suffix_echo_cursor_line_itself_can_echo() -> None:
    c = ctx("def f(a):\n    ", "\n    return a\n")
    assert generate("return a\n", c, "suffix_echo") == ("", "suffix_echo")


@pytest.mark.parametrize("text, suffix", [
    ("if x:\n        return result\n", "\n    return result\n"),  # other indentation
    ("if (x) {\n  y();\n}\n", "\n}\n"),                           # a trivial line
])
def test_suffix_echo_ignores_non_duplicates(text: str, suffix: str) -> None:
    assert generate(text, ctx("def f(a):\n    ", suffix), "suffix_echo") == (text, None)


def test_suffix_echo_does_nothing_in_single_line_mode() -> None:
    c = ctx("x = ", "\ny = 2\n", single_line=True)
    assert STOP_RULES["suffix_echo"].cut("1\ny = 2\n", c) is None


# --- repetition ----------------------------------------------------------------------------

def test_same_line_three_times_keeps_the_first() -> None:
    c = ctx("def f():\n    ", "\n")
    text = "x.append(1)\n    x.append(1)\n    x.append(1)\n    x.append(1)\n"
    assert generate(text, c, "repetition") == ("x.append(1)", "repetition")


def test_short_line_twice_is_allowed() -> None:
    c = ctx("def f(it):\n    ", "\n")
    text = "next(it)\n    next(it)\n    return it\n"
    assert generate(text, c, "repetition") == (text, None)


def test_long_line_twice_is_a_repetition() -> None:
    c = ctx("def f():\n    ", "\n")
    text = "result = compute(alpha, beta, gamma)\n    result = compute(alpha, beta, gamma)\n"
    assert generate(text, c, "repetition") == (
        "result = compute(alpha, beta, gamma)", "repetition")


def test_repeated_block_keeps_the_first_copy() -> None:
    c = ctx("", "")
    text = "a = load(1)\nb = save(a)\na = load(1)\nb = save(a)\na = load(1)\n"
    assert generate(text, c, "repetition") == ("a = load(1)\nb = save(a)", "repetition")


def test_reemitting_the_lines_before_the_cursor_is_cut_to_nothing() -> None:
    c = ctx("x = load(path)\ny = parse(x)\n", "")
    assert generate("x = load(path)\ny = parse(x)\nz = 1\n", c, "repetition") == (
        "", "repetition")


def test_reemission_after_new_content_keeps_the_new_content() -> None:
    c = ctx("def f():\n    x = load(path)\n    y = parse(x)\n    ", "\n")
    text = "z = check(y)\n    x = load(path)\n    y = parse(x)\n    z = check(y)\n"
    assert generate(text, c, "repetition") == ("z = check(y)", "repetition")


def test_the_users_own_repeated_lines_are_not_blamed() -> None:
    c = ctx("foo()\nfoo()\nfo", "\n")
    assert generate("o()\nbar()\n", c, "repetition") == ("o()\nbar()\n", None)


def test_user_part_of_cursor_line_is_never_cut() -> None:
    # the repeated block starts at the cursor's line: cut after the completed line, not in it
    c = ctx("load(a)\nsave(a)\nlo", "\n")
    assert generate("ad(a)\nsave(a)\nmore()", c, "repetition") == ("ad(a)", "repetition")


@pytest.mark.parametrize("text", [
    "[0, 0, 0],\n    [0, 0, 0],\n    [0, 0, 0],\n    [0, 0, 1],\n",  # data rows
    "}\n  }\n}\n",                                                   # closers
    "\n\n\n",
])
def test_trivial_lines_may_repeat(text: str) -> None:
    assert generate(text, ctx("m = [\n    ", "\n"), "repetition") == (text, None)


def test_inline_loop_keeps_one_copy() -> None:
    c = ctx("x = ", "\n", single_line=True)
    text = "self." + "foo." * 12
    assert generate(text, c, "repetition") == ("self.foo", "repetition")  # one ".foo"


@pytest.mark.parametrize("text", ["'" + "-" * 60 + "'", "[None, None, None, None, None]",
                                  "0, " * 20])
def test_inline_non_loops(text: str) -> None:
    assert generate(text, ctx("x = ", "\n", single_line=True), "repetition") == (text, None)


# --- first_cut combines the rules ------------------------------------------------------------

def test_earliest_cut_wins() -> None:
    c = ctx("def f():\n    ", "\n    return y\n")
    text = "y = 1\n    return y\n\ndef g():\n"
    # suffix_echo (before `return y`) comes before indent_scope (before `def g`)
    assert first_cut(text, c) == (len("y = 1"), "suffix_echo")
    assert first_cut(text, c, frozenset({"suffix_echo"})) == (len(text) - 11, "indent_scope")


def test_whole_text_and_streaming_agree() -> None:
    c = ctx("class A:\n    def f(self):", "\n")
    text = "\n        return 1\n    def g(self):\n        return 2\n"
    streamed, _ = generate(text, c)
    assert first_cut(text, c) == (len(streamed), "indent_scope")
