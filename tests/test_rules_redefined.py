"""Stop rule redefined: a suggestion that writes again a definition standing above the cursor.

Run the way the pipeline runs it: the suggestion grows one character at a time and generation
stops at the first cut.
"""

from __future__ import annotations

import json

from bench import loop_rules
from lsp_server.completion.completer import Completer, Cursor
from lsp_server.completion.rules import SuggestionContext, first_cut
from lsp_server.completion.rules.base import nontrivial
from lsp_server.completion.rules.redefined import MIN_LINES, Redefined
from lsp_server.completion.session import ModelSession
from lsp_server.quality.data import load_tasks
from tests.test_rules_progression import stored_run
from tests.test_rules_stop import generate

FUNCTION = '''def total_match(lst1, lst2):
    """
    Return the list whose strings have fewer characters in all.
    If both have the same number, return the first list.
    Both lists hold strings only.

    total_match([], []) == []
    total_match(['hi', 'admin'], ['hI', 'Hi']) == ['hI', 'Hi']
    total_match(['4'], ['1', '2', '3', '4', '5']) == ['4']
    total_match(['hi', 'admin'], ['hi', 'hi', 'admin']) == ['hi', 'admin']
    """
'''
"""A definition with eight non-trivial lines (the docstring's quotes and blank line do not
count), the cursor in its body."""
BODY = "    n1 = sum(len(s) for s in lst1)\n"


def ctx(prefix: str = FUNCTION + "    ", suffix: str = "\n") -> SuggestionContext:
    return SuggestionContext(prefix, suffix, "python", False)


def indented(text: str, by: str = "    ") -> str:
    return "".join(by + line if line.strip() else line for line in text.splitlines(True))


def test_the_enclosing_definition_written_again_is_cut_whole() -> None:
    copy = indented(FUNCTION) + "        return lst1\n"
    kept, rule = generate(BODY.lstrip() + copy, ctx(), "redefined")
    assert rule == "redefined"
    assert kept == BODY.strip()
    # Through all the rules: none of the others sees it (too far from the cursor to repeat
    # the lines above it, and no copy inside the suggestion).
    assert generate(BODY.lstrip() + copy, ctx()) == (kept, "redefined")
    assert first_cut(BODY.lstrip() + copy + "\n", ctx(), frozenset({"redefined"})) is None
    # A suggestion that is nothing but the copy is cut to nothing.
    assert generate(copy.lstrip(), ctx(), "redefined") == ("", "redefined")


def test_the_cut_comes_when_the_copy_reaches_min_lines() -> None:
    lines = indented(FUNCTION).splitlines(True)
    rule, c = Redefined(), ctx()
    # The copy's lines one by one: cut once MIN_LINES non-trivial ones are complete.
    written = [i for i in range(1, len(lines) + 1)
               if rule.cut("".join(lines[:i]), c) is not None]
    nontrivial_seen = [sum(map(nontrivial, lines[:i])) for i in written]
    assert written and nontrivial_seen[0] == MIN_LINES


def test_copies_that_do_not_start_at_a_definition_or_are_short_are_left_alone() -> None:
    setup = ("client = make_client(port)\n    client.login('user', 'secret')\n"
             "    page = client.get('/items')\n    assert page.status == 200\n"
             "    items = page.json()\n    assert len(items) == 3\n"
             "    first = items[0]\n    assert first['name'] == 'apple'\n")
    prefix = "def test_one():\n    " + setup + "\n\ndef test_two():\n    "
    text = setup + "    assert first['price'] == 2\n"
    # A test's set-up copied from the one above: no definition at its start.
    assert generate(text, ctx(prefix), "redefined") == (text, None)
    # A definition copied, but shorter than MIN_LINES non-trivial lines.
    short = "def area(w, h):\n    a = w * h\n    return a\n\n\n"
    text = "pass\n\n" + short + "def volume(w, h, d):\n    return area(w, h) * d\n"
    assert generate(text, ctx(short + "def g():\n    "), "redefined") == (text, None)


def test_indentation_does_not_matter_and_the_users_line_is_theirs() -> None:
    # The method above written again as a top-level function: a copy.
    method = "class Lists:\n" + indented(FUNCTION) + "        pass\n\n"
    copy = "\n" + FUNCTION + "    return lst1\n"
    kept, rule = generate("return None\n" + copy, ctx(method + "    "), "redefined")
    assert rule == "redefined" and kept == "return None"
    # The user started the definition on the cursor's line: the copy is what they asked for.
    c = ctx(FUNCTION + "\n\n" + FUNCTION.splitlines()[0][:-2])
    text = FUNCTION[len(FUNCTION.splitlines()[0]) - 2:] + "    return lst2\n"
    assert generate(text, c, "redefined") == (text, None)


def test_min_lines_is_a_parameter_and_streaming_matches_the_whole_text() -> None:
    text = BODY.lstrip() + indented(FUNCTION) + "        return lst1\n"
    assert Redefined(min_lines=9).cut(text, ctx()) is None
    assert Redefined(min_lines=4).cut(text, ctx()) == len(BODY.strip())
    streamed, _ = generate(text, ctx(), "redefined")
    assert Redefined().cut(text, ctx()) == len(streamed)


def test_the_embedded_model_writing_a_definition_again_is_stopped(
        patient: ModelSession) -> None:
    """A file where one function stands twice (pasted): at the blank lines after them the
    embedded model writes it a third time, line for line (a strong pattern, so the same text on
    any CPU; the HumanEval answers it cuts start over the same way, tables in docs/quality.md).
    Through the real completion path the rule stops it once the copy holds MIN_LINES lines and
    removes it, so nothing is suggested; without the rule it runs to the token limit."""
    body = ("    n1 = sum(len(s) for s in lst1)\n    n2 = sum(len(s) for s in lst2)\n"
            "    return lst1 if n1 <= n2 else lst2\n\n\n")
    cursor = Cursor((FUNCTION + body) * 2, "\n", "lists.py", language="python")
    runs = {name: Completer(patient).complete(cursor, single_line=False, max_tokens=128,
                                              candidates=1, disabled_rules=disabled)
            for name, disabled in (("all", frozenset()),
                                   ("no redefined", frozenset({"redefined"})))}
    assert runs["no redefined"].stop.startswith("max_tokens"), runs["no redefined"].stop
    assert runs["no redefined"].text.startswith(FUNCTION.split("\n")[0])
    assert runs["all"].stop == "redefined", (runs["all"].stop, runs["all"].text)
    assert runs["all"].text == ""
    assert runs["all"].stats.n_generated < runs["no redefined"].stats.n_generated


def test_heldout_fires_and_replay_cuts_the_copy(tmp_path, capsys) -> None:  # noqa: ANN001
    text = BODY.lstrip() + indented(FUNCTION)
    assert loop_rules.fires(Redefined(), ctx(), text.rstrip())
    assert not loop_rules.fires(Redefined(min_lines=9), ctx(), text.rstrip())

    tasks = load_tasks("multi-line", limit=2)
    header = tasks[1].editor_prefix[tasks[1].editor_prefix.rfind("\ndef ") + 1:]
    assert sum(map(nontrivial, header.splitlines())) >= MIN_LINES
    run = stored_run(tmp_path, [(tasks[0], tasks[0].expected, True),
                                (tasks[1], indented(header), False)])
    out = tmp_path / "replay.json"
    assert loop_rules.main(["replay", str(run), "--rule", "redefined", "--json", str(out)]) == 0
    assert "2 completions, 1 cut by redefined (redefined 1;" in capsys.readouterr().out
    changed = json.loads(out.read_text())["changed"]
    assert [(c["task_id"], c["chars_after"]) for c in changed] == [(tasks[1].task_id, 0)]
