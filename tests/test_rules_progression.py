"""Stop rule progression: a suggestion that counts on (``if n == 1``, ``if n == 2``, …).

Run the way the pipeline runs it: the suggestion grows one character at a time and generation
stops at the first cut.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import loop_rules
from lsp_server.completion.completer import Completer, Cursor
from lsp_server.completion.rules import STOP_RULES, SuggestionContext, first_cut
from lsp_server.completion.rules.progression import COPIES, Progression, counting
from lsp_server.completion.session import ModelSession
from lsp_server.quality.data import Task, load_tasks
from tests.test_rules_stop import generate as stream


def ctx(prefix: str, suffix: str = "\n", single_line: bool = False) -> SuggestionContext:
    return SuggestionContext(prefix, suffix, "python", single_line)


def generate(text: str, c: SuggestionContext, only: str | None = "progression"
             ) -> tuple[str, str | None]:
    """Stream ``text`` through the progression rule alone (or through rule ``only``)."""
    return stream(text, c, only)


def blocks(template: str, values: list[object]) -> str:
    return "".join(template.format(v) for v in values)


def test_counting_two_line_blocks_keep_one_copy_fewer_than_the_threshold() -> None:
    text = blocks("if n == {0}:\n        return {0}\n    ", list(range(1, 20)))
    kept, rule = generate(text, ctx("def f(n):\n    "))
    assert rule == "progression"
    assert kept == blocks("if n == {0}:\n        return {0}\n    ", [1, 2, 3, 4]).rstrip()
    assert kept.count("if n ==") == COPIES - 1


def test_counting_lines_with_indices() -> None:
    text = blocks("# print(l[{}])\n    ", list(range(0, 30)))
    kept, rule = generate(text, ctx("def f(l):\n    "))
    assert (kept, rule) == (blocks("# print(l[{}])\n    ", [0, 1, 2, 3]).rstrip(), "progression")


def test_letters_through_the_alphabet_count() -> None:
    text = blocks("if i == \"{}\":\n            flg = flg + 1\n        ", list("abcdefghijk"))
    kept, rule = generate(text, ctx("    for i in s:\n        "))
    assert rule == "progression" and kept.count("if i ==") == COPIES - 1


def test_the_first_line_may_hold_the_users_part_of_the_line() -> None:
    c = ctx("def f(l):\n    x[0] = ")
    text = "0\n" + blocks("    x[{0}] = {0}\n", list(range(1, 12)))
    kept, rule = generate(text, c)
    assert rule == "progression"
    assert (c.cursor_line + kept).count("x[") == COPIES - 1


def test_a_short_progression_is_left_alone() -> None:
    text = blocks("assert out[{0}] == {0}\n    ", [0, 1, 2, 3]) + "return out\n"
    assert generate(text, ctx("def test():\n    ")) == (text, None)


def test_lines_alike_that_do_not_count_are_left_alone() -> None:
    # same shape, but the numbers jump about: a data table, not a loop
    text = "".join(f"    x = f({v})\n" for v in (3, 1, 4, 1, 5, 9, 2, 6, 5, 3))
    assert generate(text, ctx("def f():\n")) == (text, None)
    # same shape, strings that are words, not letters
    words = "".join(f"    '{w}',\n" for w in ("break", "continue", "else", "for", "if", "in"))
    assert generate(words, ctx("KEYWORDS = [\n")) == (words, None)


def test_verbatim_copies_are_the_repetition_rules() -> None:
    text = "x.append(1)\n    " * 8
    assert generate(text, ctx("def f():\n    "))[1] is None
    assert generate(text, ctx("def f():\n    "), only=None)[1] == "repetition"


def test_the_users_table_above_the_cursor_does_not_count() -> None:
    prefix = "def f(x):\n" + blocks("    x[{0}] = {0}\n", list(range(10))) + "    "
    text = "x[10] = 10\n    x[11] = 11\n    return x\n"
    assert generate(text, ctx(prefix)) == (text, None)


def test_inline_counting_chunk_keeps_its_first_copy() -> None:
    c = ctx("def f(depth):\n    ")
    text = "return depth == 0" + "".join(f" or depth == {i}" for i in range(1, 30))
    kept, rule = generate(text, c)
    assert (kept, rule) == ("return depth == 0 or depth == 1", "progression")


def test_inline_letters_count_too() -> None:
    c = ctx("def f(s):\n    ", single_line=True)
    text = "if s[0] == \"a\"" + "".join(f" or s[0] == \"{ch}\"" for ch in "bcdefghijklm") + ":"
    kept, rule = generate(text, c)
    assert (kept, rule) == ('if s[0] == "a" or s[0] == "b"', "progression")


@pytest.mark.parametrize("text", [
    "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]",  # a counting list: no letter in the chunk
    "a[0] + a[2] + a[1] + a[5] + a[3] + a[4] + a[9] + a[7] + a[8]",  # alike, not counting
    "x == 'up' or x == 'down' or x == 'left' or x == 'right' or x == 'in' or x == 'out' "
    "or x == 'top' or x == 'low'",
])
def test_inline_non_progressions(text: str) -> None:
    assert generate(text, ctx("y = ", single_line=True)) == (text, None)


@pytest.mark.parametrize(("copies", "expected"), [
    (["x[1]", "x[2]", "x[3]"], True),
    (["x[0] = 'a'", "x[2] = 'b'", "x[4] = 'c'"], True),  # two columns, each its own step
    (["f(9, 1)", "f(7, 1)", "f(5, 1)"], True),  # counting down
    (["x[1]", "x[2]", "x[4]"], False),
    (["x[1]", "x[1]", "x[1]"], False),  # nothing changes
    (["x = 'ab'", "x = 'cd'", "x = 'ef'"], False),  # strings longer than one character
])
def test_counting(copies: list[str], expected: bool) -> None:
    assert counting(copies) is expected


def test_whole_text_and_streaming_agree() -> None:
    c = ctx("def f(n):\n    ")
    text = blocks("if n == {0}:\n        return {0}\n    ", list(range(1, 9)))
    streamed, _ = generate(text, c)
    assert first_cut(text, c, frozenset(STOP_RULES) - {"progression"}) == (
        len(streamed), "progression")


def test_copies_is_a_parameter() -> None:
    c = ctx("def f(l):\n    ")
    text = blocks("print(l[{}])\n    ", list(range(10)))
    assert Progression(copies=3).cut(text, c) == len(blocks("print(l[{}])\n    ", [0, 1]).rstrip())


def test_the_embedded_model_counting_is_stopped(patient: ModelSession) -> None:
    """A task on which the embedded model comments out ``print(l[0])``, ``print(l[1])``, … to
    the token limit: the real completion path stops it after four (68 tokens of the 96 allowed)."""
    task = next(t for t in load_tasks("multi-line")
                if t.task_id == "MultiLineInfilling/HumanEval/33/L0_L0")
    cursor = Cursor(task.editor_prefix, task.editor_suffix, "sort_third.py", language="python")
    switched = {"with": frozenset(), "without": frozenset({"progression"})}
    runs = {name: Completer(patient).complete(cursor, single_line=False, max_tokens=96,
                                              candidates=1, disabled_rules=disabled)
            for name, disabled in switched.items()}
    assert runs["without"].stop == "max_tokens" and runs["without"].text.count("print(l[") > 4
    assert runs["with"].stop == "progression"
    assert [f"print(l[{i}])" in runs["with"].text for i in range(5)] == [True] * 4 + [False]
    assert runs["without"].text.startswith(runs["with"].text)
    assert runs["with"].stats.n_generated < runs["without"].stats.n_generated


# --- bench/loop_rules.py: how the threshold was chosen, and the replay -------------------

def test_heldout_positions_end_with_the_block_and_count_cuts() -> None:
    text = ("def f(x):\n" + blocks("    assert x[{0}] == {0}\n", list(range(7)))
            + "\ndef g():\n    return 1\n")
    cases = list(loop_rules.positions(text, 1024))
    assert len(cases) == 10  # every non-blank line
    ctx, rest = cases[1]  # the cursor after the indentation of the first assert
    assert ctx.cursor_line == "    " and rest.startswith("assert x[0] == 0\n")
    assert "def g" not in rest  # indent_scope ends the true continuation at the block's end
    assert loop_rules.fires(Progression(), ctx, rest)  # 7 counting lines: cut after 4
    assert not loop_rules.fires(Progression(copies=8), ctx, rest)
    assert not loop_rules.fires(Progression(), *cases[-1])
    assert loop_rules.generated("# Automatically generated by tools/make.py\nX = 1\n")
    assert not loop_rules.generated('"""Helpers."""\nX = 1\n')


def stored_run(tmp_path: Path, answers: list[tuple[Task, str, bool]]) -> Path:
    """A ``bench/infill_chunks.py`` run folder of one chunk holding ``answers`` (task, text,
    passed), each stored as having run to the token limit."""
    import gzip
    import json

    from lsp_server.quality.metrics import TaskResult

    run = tmp_path / "one"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"benchmark": "multi-line", "tasks": len(answers),
                                              "chunks": 1, "options": []}))
    with gzip.open(run / "chunk-00000.jsonl.gz", "wt", encoding="utf-8") as f:
        for task, text, passed in answers:
            f.write(json.dumps(TaskResult(
                task.task_id, 0, text, passed, "passed" if passed else "failed", "", False, 1.0,
                256, "max_tokens", 0.1).to_json()) + "\n")
    return run


def test_replay_cuts_stored_answers_and_executes_them(tmp_path, capsys) -> None:  # noqa: ANN001
    import json

    tasks = load_tasks("multi-line", limit=2)
    indent = tasks[1].expected[:len(tasks[1].expected) - len(tasks[1].expected.lstrip())]
    counting_answer = "".join(f"{indent}# print(l[{i}])\n" for i in range(12)).rstrip()
    run = stored_run(tmp_path, [(tasks[0], tasks[0].expected, True),
                                (tasks[1], counting_answer, False)])
    out = tmp_path / "replay.json"
    assert loop_rules.main(["replay", str(run), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 completions, 1 cut by progression" in printed and "2 tasks in both" in printed
    changed = json.loads(out.read_text())["changed"]
    assert [c["task_id"] for c in changed] == [tasks[1].task_id]
    kept = "".join(f"{indent}# print(l[{i}])\n" for i in range(4)).rstrip()
    assert changed[0]["chars_after"] == len(kept)  # four of the twelve lines
    assert changed[0]["passed_before"] is False and changed[0]["passed_after"] is False
