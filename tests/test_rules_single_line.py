"""decide_single_line: which cursor positions get a one-line suggestion."""

from __future__ import annotations

import pytest

from lsp_server.completion.rules import decide_single_line


@pytest.mark.parametrize("language, prefix, suffix", [
    # the cursor is mid-line
    ("python", "x = foo(", "a)\n"),
    ("python", "foo(", ")"),
    ("typescript", "if (", ") {\n}"),
    # one-line statements
    ("python", "import o", "\n"),
    ("python", "from os import pa", ""),
    ("python", "def f():\n    return x", "\n"),
    ("c", "#include <std", "\n"),
    ("rust", "use std::coll", "\n"),
    ("go", "import \"fm", "\n"),
    ("lua", "local x = requi", "\n"),
    ("go", "\tdefer mu.Unl", "\n"),
    # assignments with a value
    ("python", "    x = compute", "\n"),
    ("python", "x: int = 5", ""),
    ("python", "f = lambda y: y + 1", ""),
    ("rust", "let y = a.b", ""),
    ("go", "n := len(xs)", ""),
    ("python", "a += b", ""),
    ("javascript", "const x = self.", ""),
    ("c", "p = obj->", ""),
    # an argument list in progress on this line
    ("python", "print('a', ", ""),
    ("python", "    result = foo(a, b", "\n"),
    ("rust", "fn f<'a>(x: &'a str, y", ""),
    # inside a line comment or a one-line string
    ("python", "    # compute the", "\n"),
    ("javascript", "x(); // helper for", ""),
    ("python", 'x = "hello wor', "\n"),
])
def test_single_line(language: str, prefix: str, suffix: str) -> None:
    assert decide_single_line(prefix, suffix, language) is True


@pytest.mark.parametrize("language, prefix, suffix", [
    ("python", "x = foo(", "\n"),             # the arguments may follow on new lines
    ("python", "return x +", ""),             # the expression goes on
    ("python", "ok = a and", ""),
    ("python", "def f():", "\n"),             # a block follows
    ("python", "for i in range(10):", ""),
    ("python", "", ""),                        # a blank line
    ("python", "def f():\n    ", "\n    pass"),
    ("python", "foo(\n    a,\n    b", "\n)"),  # inside a bracket opened on an earlier line
    ("python", "x = ", ""),                   # no value yet
    ("python", "foo(a)", ""),                 # a complete call: the next thing is a new line
    ("python", "@app.get('/')", ""),
    ("python", 'def f():\n    """Compute', ""),  # a docstring may span lines
    ("javascript", "if (x) {", ""),
    ("javascript", "const f = function(a, b)", ""),
    ("typescript", "const f = (a: number) =>", ""),
    ("typescript", "export default function App()", ""),
    ("c", "int x = 5;", ""),                  # terminated: what follows is a new line
    ("c", "x = 1; /* note", ""),              # a block comment may span lines
    ("go", "switch x {", ""),
    ("rust", "fn main() -> Result<(), E> {", ""),
    ("lua", "local function f(a)", ""),
    ("lua", "if x then", ""),
    ("lua", "x = 1 --[[ long", ""),
])
def test_multi_line(language: str, prefix: str, suffix: str) -> None:
    assert decide_single_line(prefix, suffix, language) is False


def test_blank_rest_of_line_with_carriage_return_is_end_of_line() -> None:
    assert decide_single_line("def f():", "\r\n    pass", "python") is False
