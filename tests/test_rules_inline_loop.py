"""Stop rule inline_loop: the line being written repeats one chunk with only its literals changing.

Run the way the pipeline runs it: the suggestion grows one character at a time and generation
stops at the first cut.
"""

from __future__ import annotations

import json

import pytest

from bench import loop_rules
from lsp_server.completion.completer import Completer, Cursor
from lsp_server.completion.rules import SuggestionContext, first_cut
from lsp_server.completion.rules.inline_loop import MIN_REPEATS, InlineLoop, loop_cut
from lsp_server.completion.session import ModelSession
from lsp_server.quality.data import load_tasks
from tests.test_rules_progression import stored_run
from tests.test_rules_stop import generate

VOWELS = 'if s[i] in "a"' + "".join(f' or s[i] in "{c}"' for c in "eiouytfbcd") + ":"
"""A condition as the embedded model writes it: one chunk, its letters in no order."""


def ctx(prefix: str = "def f(s):\n    for i in range(len(s)):\n        ",
        suffix: str = "\n", single_line: bool = False) -> SuggestionContext:
    return SuggestionContext(prefix, suffix, "python", single_line)


def test_a_chunk_looping_with_new_literals_keeps_two_values() -> None:
    kept, rule = generate(VOWELS, ctx(), "inline_loop")
    assert (kept, rule) == ('if s[i] in "a" or s[i] in "e"', "inline_loop")
    # Through all the rules: the others do not see it (the copies differ, the letters do not
    # count), in single-line mode as well.
    assert generate(VOWELS, ctx()) == (kept, "inline_loop")
    assert generate(VOWELS, ctx(single_line=True)) == (kept, "inline_loop")
    assert first_cut(VOWELS, ctx(), frozenset({"inline_loop"})) is None
    # Names compared with strings and numbers alike; the cut keeps two values in any phase.
    text = "return " + " or ".join(f"x == '{w}'" for w in ("red", "blue", "red", "green",
                                                            "tan", "blue", "red", "gray"))
    assert generate(text, ctx("def f(x):\n    "), "inline_loop") == (
        "return x == 'red' or x == 'blue'", "inline_loop")


def test_counting_and_identical_chunks_are_the_other_rules() -> None:
    counting = "return depth == 0" + "".join(f" or depth == {i}" for i in range(1, 12))
    assert generate(counting, ctx("def f(depth):\n    "))[1] == "progression"
    assert loop_cut(counting) is None
    exact = "x = self" + ".parent" * 12
    assert generate(exact, ctx("def f(self):\n    "))[1] == "repetition"
    assert loop_cut(exact) is None


@pytest.mark.parametrize("text", [
    'if s[i] in "a" or s[i] in "e" or s[i] in "i" or s[i] in "o":',  # four copies
    "[0, 4, 1, 7, 2, 9, 3, 8, 5, 6, 11, 13]",  # no letter in the chunk
    "x = ('alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta')",  # no letter once masked
    "total = a.x + b.y + c.z + d.w + e.v + f.u + g.t",  # names are not literals
])
def test_short_loops_and_lists_are_left_alone(text: str) -> None:
    assert generate(text, ctx("def f(a):\n    "), "inline_loop") == (text, None)


def test_only_the_line_being_written_and_the_models_part_count() -> None:
    # The user wrote the first copies on the cursor's line: the model's part alone decides.
    c = ctx('def f(ch):\n    return ch == "q" or ch == "z" or ch == "x" or ch == "j" or ')
    text = 'ch == "k" or ch == "v"\n'
    assert generate(text, c, "inline_loop") == (text, None)
    # A loop on an earlier, complete line was the streaming check's to cut when it was written.
    assert InlineLoop().cut(VOWELS + "\n            n += 1", ctx()) is None


def test_min_repeats_is_a_parameter() -> None:
    four = 'if s[i] in "a" or s[i] in "e" or s[i] in "i" or s[i] in "o"'
    assert InlineLoop(min_repeats=MIN_REPEATS).cut(four, ctx()) is None
    assert generate(four, ctx(), "inline_loop") == (four, None)
    assert InlineLoop(min_repeats=3).cut(four, ctx()) is not None


def test_the_embedded_model_looping_in_one_line_is_stopped(patient: ModelSession) -> None:
    """A condition the embedded model goes on with letter after letter (``ch == "a" or ch ==
    "e" or ch == "i" …``, in no order): through the real completion path the rule stops it at
    its second value; without the rule it runs to the token limit on that one line."""
    prefix = ("def score(word):\n    total = 0\n    for ch in word:\n"
              '        if ch == "q" or ch == "z" or ch == "x" or ch == "j" or ')
    cursor = Cursor(prefix, "\n", "score.py", language="python")
    runs = {name: Completer(patient).complete(cursor, single_line=False, max_tokens=64,
                                              candidates=1, disabled_rules=disabled)
            for name, disabled in (("all", frozenset()),
                                   ("no inline_loop", frozenset({"inline_loop"})))}
    assert runs["all"].stop == "inline_loop", (runs["all"].stop, runs["all"].text)
    assert runs["all"].text.strip().count(" or ") == 1, runs["all"].text
    assert runs["no inline_loop"].stop.startswith("max_tokens"), runs["no inline_loop"].stop
    assert runs["no inline_loop"].text.startswith(runs["all"].text)
    assert runs["no inline_loop"].text.count(" or ") >= 2 * MIN_REPEATS
    assert runs["all"].stats.n_generated < runs["no inline_loop"].stats.n_generated


def test_heldout_fires_on_the_line_and_replay_cuts_it(tmp_path, capsys) -> None:  # noqa: ANN001
    assert loop_rules.fires(InlineLoop(), ctx(), "n = 0\n        " + VOWELS + "\n        n += 1")
    assert not loop_rules.fires(InlineLoop(min_repeats=12), ctx(), VOWELS)

    tasks = load_tasks("multi-line", limit=2)
    run = stored_run(tmp_path, [(tasks[0], tasks[0].expected, True),
                                (tasks[1], "    " + VOWELS[:-1], False)])
    out = tmp_path / "replay.json"
    assert loop_rules.main(["replay", str(run), "--rule", "inline_loop", "--json", str(out)]) == 0
    assert "2 completions, 1 cut by inline_loop (inline_loop 1;" in capsys.readouterr().out
    changed = json.loads(out.read_text())["changed"]
    assert [(c["task_id"], c["chars_after"]) for c in changed] == [
        (tasks[1].task_id, len('    if s[i] in "a" or s[i] in "e"'))]
