"""Stop rule renumbered: a suggestion that writes a long block again with only its numbers changed.

Run the way the pipeline runs it: the suggestion grows one character at a time and generation
stops at the first cut.
"""

from __future__ import annotations

import json

from bench import loop_rules
from lsp_server.completion.completer import Completer, Cursor
from lsp_server.completion.rules import SuggestionContext, first_cut
from lsp_server.completion.rules.renumbered import MIN_LINES, Renumbered, copy_start
from lsp_server.completion.session import ModelSession
from lsp_server.quality.data import load_tasks
from tests.test_rules_progression import stored_run
from tests.test_rules_stop import generate

HELPER = ("def find_prime{0}(n):\n"
          "        for i in range(2, n):\n"
          "            if n % i == 0:\n"
          "                return i\n"
          "        return n\n"
          "\n    ")
"""A helper of five non-trivial lines and a blank one, as the embedded model writes it inside a
function and then again as ``find_prime2``, ``find_prime3``, …"""


def ctx(prefix: str = "def f(x):\n    ", suffix: str = "\n") -> SuggestionContext:
    return SuggestionContext(prefix, suffix, "python", False)


def copies(template: str, names: list[str]) -> str:
    return "".join(template.format(n) for n in names)


def test_a_renamed_copy_of_a_long_block_is_cut_keeping_the_first() -> None:
    text = copies(HELPER, ["", "2", "3", "4"])
    kept, rule = generate(text, ctx(), "renumbered")
    assert rule == "renumbered"
    assert kept == HELPER.format("").rstrip()
    # Through all the rules: none of the others sees it (the copies neither repeat nor count).
    assert generate(text, ctx()) == (kept, "renumbered")
    assert first_cut(text, ctx(), frozenset({"renumbered"})) is None


def test_numbers_anywhere_and_underscored_suffixes_are_alike() -> None:
    block = ("x_{0} = load('a{0}.csv')\n    y_{0} = x_{0}.mean()\n    z_{0} = x_{0}.std()\n"
             "    print(y_{0}, z_{0})\n    save(z_{0}, {0})\n    ")
    kept, rule = generate(copies(block, ["1", "2"]), ctx(), "renumbered")
    assert rule == "renumbered" and kept == block.format("1").rstrip()
    # ``find`` and ``find_2``: a number added where there was none is a renumbering too.
    seq = ["def find(n):", "    a = n + 1", "    b = a * 2", "    c = b - 3", "    return c",
           "def find_2(n):", "    a = n + 2", "    b = a * 3", "    c = b - 4", "    return c"]
    assert copy_start(seq) == 5


def test_a_short_block_looping_is_cut_once_two_rounds_hold_five_lines() -> None:
    numbers = [3, 7, 4, 9, 1, 8, 2, 6, 5, 0, 11, 12]  # not counting: progression's miss
    one = "total += values[{}]\n    "
    kept, rule = generate(copies(one, numbers), ctx(), "renumbered")
    assert rule == "renumbered" and kept == copies(one, numbers[:5]).rstrip()
    three = "# the next one\n    x = values[{0}]\n    total += x * {0}\n    "
    kept, rule = generate(copies(three, numbers), ctx(), "renumbered")
    assert rule == "renumbered" and kept == copies(three, numbers[:2]).rstrip()


def test_short_blocks_and_separated_copies_are_left_alone() -> None:
    four = "a{0} = f({0})\n    b{0} = g(a{0})\n    c{0} = h(b{0})\n    print(c{0})\n    "
    assert generate(copies(four, ["1", "2", "3"]), ctx(), "renumbered") == (
        copies(four, ["1", "2", "3"]), None)
    # The same long block with something else between the copies: not a loop.
    text = HELPER.format("") + "total = 0\n    " + HELPER.format("2")
    assert generate(text, ctx(), "renumbered") == (text, None)


def test_identical_copies_are_the_repetition_rules() -> None:
    block = ("first = load(path)\n    second = clean(first)\n    third = join(second)\n"
             "    fourth = rank(third)\n    fifth = save(fourth)\n    ")
    # Nine lines and more are beyond the repetition rule's blocks: renumbered still leaves them.
    long = block + "sixth = show(fifth)\n    seventh = done(sixth)\n    eighth = log(seventh)\n" \
        "    ninth = end(eighth)\n    "
    for b in (block, long):
        assert Renumbered().cut(b * 2, ctx()) is None
    assert generate(block * 2, ctx())[1] == "repetition"


def test_only_the_suggestions_own_lines_count() -> None:
    """A helper the user wrote above the cursor may be followed by its renumbered copy on
    purpose: one copy in the suggestion is not cut."""
    prefix = "def f(x):\n    " + HELPER.format("")
    text = HELPER.format("2") + "return find_prime(x) + find_prime2(x)\n"
    assert generate(text, ctx(prefix), "renumbered") == (text, None)


def test_min_lines_is_a_parameter_and_streaming_matches_the_whole_text() -> None:
    four = "a{0} = f({0})\n    b{0} = g(a{0})\n    c{0} = h(b{0})\n    print(c{0})\n    "
    text = copies(four, ["1", "2", "3"])
    assert Renumbered(min_lines=4).cut(text, ctx()) == len(four.format("1").rstrip())
    assert Renumbered(min_lines=MIN_LINES).cut(text, ctx()) is None
    text = copies(HELPER, ["", "2", "3"])
    streamed, _ = generate(text, ctx(), "renumbered")
    assert Renumbered().cut(text, ctx()) == len(streamed)


def test_the_embedded_model_renumbering_is_stopped(patient: ModelSession) -> None:
    """A function that handles table 1 and table 2 in five lines each: the embedded model goes
    on with table 3, table 4, … (a strong pattern, so the same text on any CPU). Through the
    real completion path the rule stops it once its own table 4 repeats table 3's block,
    keeping table 3; without the rule it runs to the token limit."""
    prefix = ("def tables():\n"
              + "".join(f"    t{i} = load('t{i}.csv')\n    t{i} = t{i}.dropna()\n"
                        f"    t{i} = t{i}.sort_values('id')\n    t{i}.to_csv('out{i}.csv')\n"
                        f"    print(len(t{i}))\n" for i in (1, 2)))
    cursor = Cursor(prefix, "\n", "tables.py", language="python")
    runs = {name: Completer(patient).complete(cursor, single_line=False, max_tokens=128,
                                              candidates=1, disabled_rules=disabled)
            for name, disabled in (("all", frozenset()),
                                   ("no renumbered", frozenset({"renumbered"})))}
    assert runs["all"].stop == "renumbered", (runs["all"].stop, runs["all"].text)
    assert runs["all"].text.strip().startswith("t3 = load('t3.csv')"), runs["all"].text
    assert runs["all"].text.rstrip().endswith("print(len(t3))"), runs["all"].text
    assert runs["no renumbered"].stop.startswith("max_tokens"), runs["no renumbered"].stop
    assert runs["no renumbered"].text.startswith(runs["all"].text)
    assert "t4 = load('t4.csv')" in runs["no renumbered"].text
    assert runs["all"].stats.n_generated < runs["no renumbered"].stats.n_generated


# --- bench/loop_rules.py with this rule ---------------------------------------------------------

def test_heldout_fires_and_replay_names_the_rule_that_cut(tmp_path, capsys) -> None:  # noqa: ANN001
    c, text = ctx(), copies(HELPER, ["", "2", "3"])
    assert loop_rules.fires(Renumbered(), c, text.rstrip())
    assert not loop_rules.fires(Renumbered(min_lines=6), c, text.rstrip())

    tasks = load_tasks("multi-line", limit=3)
    counting = "".join(f"    # print(l[{i}])\n" for i in range(12)).rstrip()
    renamed = "    " + copies(HELPER, ["", "2", "3"]).rstrip()
    run = stored_run(tmp_path, [(tasks[0], tasks[0].expected, True), (tasks[1], counting, False),
                                (tasks[2], renamed, False)])
    out = tmp_path / "replay.json"
    assert loop_rules.main(["replay", str(run), "--rule", "progression", "renumbered",
                            "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 completions, 2 cut by progression, renumbered (progression 1, renumbered 1;" \
        in printed, printed
    changed = json.loads(out.read_text())["changed"]
    assert [(c["task_id"], c["cut_by"]) for c in changed] == [
        (tasks[1].task_id, "progression"), (tasks[2].task_id, "renumbered")]
    # The cost of a call, each rule by name, on the same stored answers.
    assert loop_rules.main(["cost", str(run), "--every", "1", "--calls", "40", "--reps", "1"]) == 0
    printed = capsys.readouterr().out
    assert "40 prefixes of 3 answers" in printed and "renumbered: " in printed, printed
