"""Prompt assembly for every family, PSM and SPM, and truncation under a token budget."""

from __future__ import annotations

import random
import re

import pytest

from lsp_server.errors import TemplateError
from lsp_server.prompt import Budget, ContextFile, Order, TEMPLATES, assemble, get_template
from lsp_server.prompt.assemble import fit_head, fit_tail
from tests.fake_tokenizer import CharTokenizer

BIG = Budget(total=10_000)

# Expected prompt text (CharTokenizer.render) for prefix "P", suffix "S", no path or context.
EXPECTED: dict[tuple[str, Order | None], str] = {
    ("codegemma", Order.PSM): "<BOS><|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>",
    ("codegemma", Order.SPM): "<BOS><|fim_prefix|><|fim_suffix|>S<|fim_middle|>P",
    ("qwen2.5-coder", Order.PSM): "<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>",
    ("starcoder", Order.PSM): "<fim_prefix>P<fim_suffix>S<fim_middle>",
    ("starcoder", Order.SPM): "<fim_prefix><fim_suffix>S<fim_middle>P",
    ("deepseek-coder", Order.PSM): "<BOS><｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>",
    ("codellama", Order.PSM): "<BOS>▁<PRE>P▁<SUF>S▁<MID>",
    ("codellama", Order.SPM): "<BOS>▁<PRE>▁<SUF>S▁<MID>P",
    ("codestral", Order.SPM): "<BOS>[SUFFIX]S[PREFIX]P",
    ("gemma3-fim", Order.PSM): "<BOS><|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>",
    ("gemma3-fim", Order.SPM): "<BOS><|fim_prefix|><|fim_suffix|>S<|fim_middle|>P",
    ("plain", None): "<BOS>P",
}


def test_every_family_and_order_is_covered() -> None:
    covered = {(name, order) for name, order in EXPECTED}
    wanted = {(t.name, o) for t in TEMPLATES.values() for o in (t.orders or (None,))}
    assert covered == wanted


@pytest.mark.parametrize(("name", "order"), list(EXPECTED))
def test_layout(name: str, order: Order | None) -> None:
    tok = CharTokenizer()
    p = assemble(get_template(name), tok, prefix="P", suffix="S", budget=BIG, order=order)
    assert tok.render(p.tokens) == EXPECTED[(name, order)]
    assert p.n_prefix == 1 and p.n_suffix == (0 if name == "plain" else 1)
    assert not p.prefix_truncated and not p.suffix_truncated


def test_default_order_is_the_preferred_one() -> None:
    tok = CharTokenizer()
    p = assemble(get_template("codegemma"), tok, prefix="P", suffix="S", budget=BIG)
    assert p.order is Order.PSM
    assert tok.render(p.tokens) == EXPECTED[("codegemma", Order.PSM)]


def test_order_the_family_was_not_trained_on_is_rejected() -> None:
    with pytest.raises(TemplateError, match="PSM"):
        assemble(get_template("codestral"), CharTokenizer(), prefix="P", suffix="S",
                 budget=BIG, order=Order.PSM)
    with pytest.raises(TemplateError, match="SPM"):
        assemble(get_template("qwen2.5-coder"), CharTokenizer(), prefix="P", suffix="S",
                 budget=BIG, order=Order.SPM)


def test_missing_sentinel_is_a_clear_error() -> None:
    tok = CharTokenizer(specials=["<fim_prefix>"])
    with pytest.raises(TemplateError, match="<fim_suffix>"):
        assemble(get_template("starcoder"), tok, prefix="P", suffix="S", budget=BIG)


def test_sentinel_text_in_user_code_stays_text() -> None:
    tok = CharTokenizer()
    code = "x = '<|fim_middle|>'\n"
    p = assemble(get_template("codegemma"), tok, prefix=code, suffix="", budget=BIG)
    assert tok.specials["<|fim_middle|>"] in p.tokens  # the real sentinel, once
    assert p.tokens.count(tok.specials["<|fim_middle|>"]) == 1


def _lines(tag: str, n: int) -> str:
    return "".join(f"{tag}{i:03d}\n" for i in range(n))


@pytest.mark.parametrize("name", ["codegemma", "starcoder", "codellama", "codestral"])
@pytest.mark.parametrize("total", [40, 64, 101, 250])
def test_truncation_keeps_text_nearest_the_cursor(name: str, total: int) -> None:
    tok = CharTokenizer()
    prefix = _lines("p", 50) + "cursor_line = "  # the cursor line is partial
    suffix = "  # rest\n" + _lines("s", 50)
    t = get_template(name)
    for order in t.orders:
        p = assemble(t, tok, prefix=prefix, suffix=suffix, budget=Budget(total=total),
                     order=order)
        assert len(p.tokens) <= total
        text = tok.render(p.tokens)
        assert p.prefix_truncated and p.suffix_truncated
        # The prefix kept is a tail of the prefix that starts at a line start…
        pre = prefix[len(prefix) - p.n_prefix:]
        assert pre in text and (pre.startswith("p") or pre == "cursor_line = ")
        # …and the suffix kept is a head of the suffix that ends at a line end.
        suf = suffix[: p.n_suffix]
        assert suf.startswith("  # rest") or p.n_suffix == 0
        assert suf.endswith("\n") or p.n_suffix == 0
        assert p.n_prefix + p.n_suffix + p.n_special == len(p.tokens)


def test_budget_shares_and_hand_back() -> None:
    tok = CharTokenizer()
    t = get_template("starcoder")  # no BOS: 3 special tokens
    long = _lines("x", 100)
    # Short prefix: the suffix gets the prefix's unused budget, in steps of 100 // 8 = 12
    # tokens: 71 unused → 60 more, 85 (17 five-char lines).
    p = assemble(t, tok, prefix="a = ", suffix=long, budget=Budget(total=103, suffix_share=0.25))
    assert p.n_prefix == 4 and p.n_suffix == 85
    # Short suffix: the prefix gets the suffix's unused budget.
    p = assemble(t, tok, prefix=long, suffix="\n", budget=Budget(total=103, suffix_share=0.25))
    assert p.n_suffix == 1 and p.n_prefix == 95
    # Both long: the suffix gets its share, the prefix the rest.
    p = assemble(t, tok, prefix=long, suffix=long, budget=Budget(total=103, suffix_share=0.25))
    assert p.n_suffix == 25 and p.n_prefix == 75


@pytest.mark.parametrize("prefix_lines", [2, 400])
def test_typing_keeps_the_suffix(prefix_lines: int) -> None:
    # In SPM the suffix comes before the prefix: if its cut moved while the user types, the
    # whole prompt after it would be evaluated again at that keystroke.
    tok = CharTokenizer()
    t = get_template("starcoder")
    before, after = _lines("p", prefix_lines), _lines("s", 400)
    heads = set()  # everything before the prefix: context, sentinels, the suffix
    for i in range(60):
        p = assemble(t, tok, prefix=before + "x" * i, suffix=after, budget=Budget(total=1000),
                     order=Order.SPM)
        assert p.suffix_truncated and p.prefix_truncated == (prefix_lines > 100)
        heads.add(tuple(p.tokens[:len(p.tokens) - p.n_prefix]))
    # A cut prefix never moves the suffix; a short one (999 // 8 = 124 tokens a step) at most
    # once in 60 characters. Given back token by token, it moved every 5 characters.
    assert len(heads) <= (1 if prefix_lines > 100 else 2), len(heads)


def test_sticky_prefix_cut_keeps_the_prompt_start() -> None:
    tok = CharTokenizer()
    t = get_template("plain")
    before = _lines("p", 400)  # 3,200 characters, cut to the last ~300 tokens
    starts = set()
    for i in range(100):
        p = assemble(t, tok, prefix=before + "y" * i, suffix="", order=None,
                     budget=Budget(total=300, sticky_share=0.25))
        assert len(p.tokens) <= 300 and p.prefix_truncated
        starts.add(tuple(p.tokens[:9]))
    assert len(starts) <= 2  # moves by 224-character strides; line by line, every 8 typed
    line_by_line = {tuple(assemble(t, tok, prefix=before + "y" * i, suffix="",
                                   budget=Budget(total=300)).tokens[:9]) for i in range(100)}
    assert len(line_by_line) > 10


def test_cursor_line_longer_than_budget_keeps_its_end() -> None:
    tok = CharTokenizer()
    line = "y = " + "+".join(str(i) for i in range(200))
    p = assemble(get_template("plain"), tok, prefix=line, suffix="", budget=Budget(total=30))
    assert "".join(chr(x) for x in p.tokens[1:]) == line[-29:]


def test_huge_prefix_is_not_tokenized_whole() -> None:
    tok = CharTokenizer()
    prefix = _lines("q", 200_000)  # 1 MB
    p = assemble(get_template("codegemma"), tok, prefix=prefix, suffix="", budget=Budget(total=500))
    assert len(p.tokens) <= 500 and p.prefix_truncated
    # Lines near the cursor are counted one by one, then the tail is tokenized a few times:
    # a few budgets' worth of characters, not the megabyte (nor 32 characters per token).
    assert tok.chars < 6 * 500 * 8, tok.chars


class MergingTokenizer(CharTokenizer):
    """A newline and the letter after it are one token (as BPE merges across line ends), so a
    text has fewer tokens than its lines counted one by one; tails still grow with each line."""

    def tokenize(self, text: str) -> list[int]:
        self.calls += 1
        self.chars += len(text)
        return [sum(map(ord, m)) for m in re.findall(r"\na|.|\n", text, re.S)]


def _reference_tail(tok: CharTokenizer, text: str, budget: int) -> tuple[list[int], bool]:
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n" and i + 1 < len(text)]
    for s in starts:  # the smallest line start whose tail fits
        if len(t := tok.tokenize(text[s:])) <= budget:
            return t, s > 0
    return tok.tokenize(text[starts[-1]:])[-budget:], True


def _reference_head(tok: CharTokenizer, text: str, budget: int) -> tuple[list[int], bool]:
    ends = [i + 1 for i, c in enumerate(text) if c == "\n"]
    ends += [] if ends and ends[-1] == len(text) else [len(text)]
    for e in reversed(ends):  # the largest line end whose head fits
        if len(t := tok.tokenize(text[:e])) <= budget:
            return t, e < len(text)
    return tok.tokenize(text[:ends[0]])[:budget], True


@pytest.mark.parametrize("seed", range(40))
def test_fit_tail_and_head_find_the_exact_cut(seed: int) -> None:
    rng = random.Random(seed)
    lines = ["".join(rng.choice("ab (") for _ in range(rng.choice([0, 1, 5, 30, 90])))
             for _ in range(rng.randint(1, 60))]
    text = "".join((" " * rng.choice([0, 4, 8])) + ln + "\n" for ln in lines)
    text = text if rng.random() < 0.5 else text.rstrip("\n")
    for budget in (1, 7, rng.randint(1, 400), 10_000):
        for fit, ref in ((fit_tail, _reference_tail), (fit_head, _reference_head)):
            tok = MergingTokenizer()
            assert fit(tok, text, budget) == ref(tok, text, budget), (fit.__name__, budget)


def test_context_with_file_separators() -> None:
    tok = CharTokenizer()
    files = [ContextFile("pkg/a.py", "A = 1\n"), ContextFile("pkg/b.py", "B = 2\n")]
    p = assemble(get_template("qwen2.5-coder"), tok, prefix="x", suffix="y", budget=BIG,
                 path="pkg/c.py", context=files, repo_name="demo")
    assert tok.render(p.tokens) == (
        "<|repo_name|>demo\n<|file_sep|>pkg/a.py\nA = 1\n<|file_sep|>pkg/b.py\nB = 2\n"
        "<|file_sep|>pkg/c.py\n<|fim_prefix|>x<|fim_suffix|>y<|fim_middle|>")
    assert p.context_files == ["pkg/a.py", "pkg/b.py"]


def test_context_as_comment_block_without_separators() -> None:
    tok = CharTokenizer()
    files = [ContextFile("lib/util.ts", "export const k = 1;")]
    p = assemble(get_template("codellama"), tok, prefix="x", suffix="y", budget=BIG,
                 path="src/main.ts", context=files)
    assert tok.render(p.tokens) == (
        "<BOS>▁<PRE>// file: lib/util.ts\nexport const k = 1;\nx▁<SUF>y▁<MID>")


def test_context_respects_its_share_and_skips_what_does_not_fit() -> None:
    tok = CharTokenizer()
    files = [ContextFile("big.py", "z" * 500), ContextFile("small.py", "s = 1\n")]
    p = assemble(get_template("codegemma"), tok, prefix="x" * 10, suffix="", budget=Budget(
        total=200, context_share=0.5), path="main.py", context=files)
    assert p.context_files == ["small.py"]
    assert p.n_context <= 100
    assert len(p.tokens) <= 200


def test_gemma3_fim_prefers_spm() -> None:
    # The adapter's order unless the user sets prompt.fimOrder: the middle continues the prefix.
    tok = CharTokenizer()
    p = assemble(get_template("gemma3-fim"), tok, prefix="P", suffix="S", budget=BIG)
    assert tok.render(p.tokens) == EXPECTED[("gemma3-fim", Order.SPM)]


def test_tiny_budget_is_an_error() -> None:
    with pytest.raises(TemplateError, match="too small"):
        assemble(get_template("codegemma"), CharTokenizer(), prefix="x", suffix="y",
                 budget=Budget(total=6))


def test_text_sentinels_are_tokenized_as_text() -> None:
    tok = CharTokenizer()  # knows "<|fim_prefix|>" as a special token, which must not be used
    p = assemble(get_template("gemma3-fim"), tok, prefix="P", suffix="S", budget=BIG,
                 path="m.py", context=[ContextFile("u.py", "x")], order=Order.PSM)
    assert not any(t in tok.names for t in p.tokens)
    assert tok.render(p.tokens) == ("<BOS><|file_separator|>u.py\nx<|file_separator|>m.py\n"
                                    "<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>")
    spelled = sum(len(x) for x in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"))
    assert p.n_special == 1 + spelled + 2 * len("<|file_separator|>")


@pytest.mark.parametrize("name", ["qwen2.5-coder", "codegemma", "codellama", "plain"])
def test_context_that_fills_its_allowance_fits_the_prompt(name: str) -> None:
    """The budget's context allowance is the split assemble applies: context selected to fill
    it exactly (costed as the packer costs files) is all in the prompt, and one token more of
    context would not be allowed."""
    from lsp_server.context.packing import file_cost, reserve
    from lsp_server.prompt.assemble import fixed_tokens

    tok = CharTokenizer()
    template = get_template(name)
    budget = Budget.for_window(1200, 64, context_share=0.35)
    assert budget.total == 1200 - 64 - 1
    allowance = budget.context_allowance(fixed_tokens(template, tok))
    count = lambda text: len(tok.tokenize(text))  # noqa: E731
    room = allowance - reserve(count, "main.py", "")
    files, left = [], room
    for i in range(100):  # files of 40 characters until the allowance is spent
        f = ContextFile(f"pkg/m{i}.py", "v = 1\n" * 6 + "w = 22\n")
        cost = file_cost(count, f.path, f.text)
        if cost > left:
            break
        files.append(f)
        left -= cost
    assert files and left < file_cost(count, files[0].path, files[0].text)
    p = assemble(template, tok, prefix="x = 1\n" * 400, suffix="y\n" * 50, budget=budget,
                 path="main.py", context=files)
    assert p.context_files == [f.path for f in files]
    assert p.n_context <= allowance and len(p.tokens) <= budget.total
