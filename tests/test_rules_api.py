"""The rules' public API (registries, first_cut, postprocess, ablation by name) and whole
suggestions on real code, the way the pipeline runs them: decide the mode, stream through the
stop rules, post-process."""

from __future__ import annotations

import dataclasses

import pytest

from lsp_server.completion.rules import (
    POST_PROCESSORS, RULE_NAMES, STOP_RULES, SuggestionContext, decide_single_line, first_cut,
    postprocess)


def test_registries_names_and_order() -> None:
    assert list(STOP_RULES) == ["line_end", "indent_scope", "suffix_echo", "repetition",
                               "progression", "renumbered", "redefined", "inline_loop"]
    assert list(POST_PROCESSORS) == ["suffix_overlap", "bracket_balance", "trailing_whitespace",
                                     "empty"]
    assert all(rule.name == name for name, rule in {**STOP_RULES, **POST_PROCESSORS}.items())
    assert RULE_NAMES == set(STOP_RULES) | set(POST_PROCESSORS)


def test_unknown_disabled_name_raises_and_lists_known_names() -> None:
    c = SuggestionContext("x = ", "")
    for call in (lambda d: first_cut("a", c, d), lambda d: postprocess("a", c, d)):
        with pytest.raises(ValueError) as err:
            call(frozenset({"line_end", "no_such_rule"}))
        message = str(err.value)
        assert "no_such_rule" in message and "line_end" in message and "empty" in message


def test_one_ablation_set_serves_both_functions() -> None:
    c = SuggestionContext("foo(", ")", single_line=True)
    both = frozenset({"line_end", "bracket_balance"})
    assert first_cut("a)\nb", c, both) is None
    assert first_cut("a)\nb", c) == (2, "line_end")
    assert postprocess("a)", c, both | {"suffix_overlap"}) == ("a)", [])


def test_postprocess_reports_the_processors_that_changed_the_text() -> None:
    c = SuggestionContext("foo(", ")", "python", single_line=True)
    assert postprocess("a, b)  ", c) == ("a, b", ["suffix_overlap"])
    assert postprocess(")", c) == ("", ["suffix_overlap"])
    assert postprocess("   ", SuggestionContext("x = ", "")) == (
        "", ["trailing_whitespace"])
    assert postprocess(" \t", SuggestionContext("x = ", "y")) == ("", ["empty"])


def test_context_is_frozen_and_compares_by_its_fields() -> None:
    a = SuggestionContext("def f():\n    ", "\n", "python")
    assert a.cursor_line == "    "  # a derived value, cached
    assert a == SuggestionContext("def f():\n    ", "\n", "python")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.prefix = "x"  # type: ignore[misc]


# --- whole suggestions on real code -------------------------------------------------------

def complete(prefix: str, suffix: str, language: str, generated: str) -> tuple[str, str | None]:
    """What the pipeline would show for a model that generates ``generated``."""
    c = SuggestionContext(prefix, suffix, language, decide_single_line(prefix, suffix, language))
    stop = None
    for i in range(1, len(generated) + 1):
        cut = first_cut(generated[:i], c)
        if cut is not None:
            generated, stop = generated[:cut[0]], cut[1]
            break
    return postprocess(generated, c)[0], stop


PY_PREFIX = '''import os


def read_config(path):
    """Read a key=value file."""
    result = {}
    with open(path) as f:
        for line in f:'''

PY_SUFFIX = '''
    return result


def main():
    print(read_config(os.environ["CONFIG"]))
'''


def test_python_block_body() -> None:
    generated = ('\n            key, _, value = line.partition("=")\n'
                 '            result[key.strip()] = value.strip()\n'
                 '    return result\n\n\ndef main():\n')
    assert complete(PY_PREFIX, PY_SUFFIX, "python", generated) == (
        '\n            key, _, value = line.partition("=")\n'
        '            result[key.strip()] = value.strip()', "indent_scope")


def test_python_mid_line_call() -> None:
    prefix = "    print(read_config(os.environ["
    assert complete(prefix, "])\n", "python", '"CONFIG"]))\n    return') == ('"CONFIG"', "line_end")


TS_PREFIX = '''export function sum(xs: number[]): number {
  let total = 0;
  for (const x of xs) {'''


def test_typescript_loop_body_ends_with_its_brace() -> None:
    suffix = "\n  return total;\n}\n"
    generated = "\n    total += x;\n  }\n  return total;\n}\n"
    # the loop's `}` is the suggestion's; `return total;` is the suffix's next line
    assert complete(TS_PREFIX, suffix, "typescript", generated) == (
        "\n    total += x;\n  }", "indent_scope")


def test_typescript_auto_closed_brace_is_not_duplicated() -> None:
    generated = "\n    total += x;\n  }\n"
    assert complete(TS_PREFIX, "\n  }\n  return total;\n}\n", "typescript", generated) == (
        "\n    total += x;", "indent_scope")


def test_go_if_err() -> None:
    prefix = 'func load(p string) (*Config, error) {\n\tb, err := os.ReadFile(p)\n\tif err != nil {'
    generated = "\n\t\treturn nil, err\n\t}\n\tvar c Config\n"
    assert complete(prefix, "\n}\n", "go", generated) == (
        "\n\t\treturn nil, err\n\t}", "indent_scope")


def test_rust_closers_with_lifetimes_in_the_prefix() -> None:
    prefix = "fn first<'a>(xs: &'a [&'a str]) -> Option<&'a str> {\n    xs.iter().next("
    # mid-line before an auto-closed `)`: the suggestion's `)` would be a second one
    assert complete(prefix, ")\n}\n", "rust", ").copied()\n}") == ("", "line_end")
    # at the end of the line the `(` is open and the suggestion may close it
    assert complete(prefix, "\n}\n", "rust", ").copied()\n}") == (").copied()", "indent_scope")


def test_c_statement_in_function() -> None:
    prefix = "#include <stdio.h>\n\nint main(void) {\n    int n = 3;\n    "
    generated = 'printf("%d\\n", n);\n    return 0;\n}\n\nint other(void) {'
    assert complete(prefix, "\n}\n", "c", generated) == (
        'printf("%d\\n", n);\n    return 0;', "indent_scope")


def test_lua_function_body() -> None:
    prefix = "local M = {}\n\nfunction M.add(a, b)"
    generated = "\n  return a + b\nend\n\nfunction M.sub(a, b)\n"
    assert complete(prefix, "\n\nreturn M\n", "lua", generated) == (
        "\n  return a + b\nend", "indent_scope")


def test_model_looping_on_the_previous_lines_yields_nothing() -> None:
    prefix = "def f(xs):\n    ys = sorted(xs)\n    zs = list(reversed(ys))\n    "
    generated = "ys = sorted(xs)\n    zs = list(reversed(ys))\n    ys = sorted(xs)\n"
    assert complete(prefix, "\n", "python", generated) == ("", "repetition")
