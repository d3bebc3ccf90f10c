"""model/data: corpus filters, the FIM transform, its layout against the daemon's assembler,
dependency-graph packing against the daemon's selection, and packed rows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="model/ needs torch: scripts/setup dev installs it")

from lsp_server.context import WorkspaceIndex  # noqa: E402
from lsp_server.context.graph import DependencyGraph  # noqa: E402
from lsp_server.context.packing import TokenCounter  # noqa: E402
from lsp_server.prompt.assemble import Budget, ContextFile, assemble  # noqa: E402
from lsp_server.prompt.templates import TEMPLATES, Order  # noqa: E402
from model.data.corpus import read_corpus  # noqa: E402
from model.data.dataset import (DataConfig, ExampleBuilder, RowStream, collate,  # noqa: E402
                                pack_rows)
from model.data.fim import FimRates, FimSplit, Layout, fim_split, line_cut  # noqa: E402
from model.data.repo_select import select_for_target  # noqa: E402
from model.gemma import IGNORE_INDEX  # noqa: E402
from tests.fake_tokenizer import CharTokenizer  # noqa: E402

CG = TEMPLATES["codegemma"]
DOC = "import os\n\n\ndef main(argv):\n    for name in argv[1:]:\n        print(name)\n"

# A small repository: cart imports tax and money, tax imports money, a test for cart, and an
# unrelated module.
REPO = {
    "shop/__init__.py": "",
    "shop/money.py": "class Money:\n    def __init__(self, cents):\n        self.cents = cents\n",
    "shop/tax.py": "from shop.money import Money\n\n\ndef vat(m: Money) -> Money:\n"
                   "    return Money(m.cents * 21 // 100)\n",
    "shop/cart.py": "from shop.money import Money\nfrom shop.tax import vat\n\n\nclass Cart:\n"
                    "    def total(self):\n        return vat(Money(100))\n",
    "tests/test_cart.py": "from shop.cart import Cart\n\n\ndef test_total():\n"
                          "    assert Cart().total().cents == 21\n",
    "shop/other.py": "def unrelated():\n    return 1\n",
}


def char_tok() -> CharTokenizer:
    tok = CharTokenizer()
    tok.eos_id = 99_000  # type: ignore[attr-defined]
    return tok


# --- FIM transform -----------------------------------------------------------------------------

def test_fim_split_invariants_and_rates() -> None:
    rng = random.Random(0)
    n, n_fim, n_spm = 4000, 0, 0
    for _ in range(n):
        s = fim_split(DOC, rng)
        assert s.document == DOC  # prefix + middle + suffix is the document
        if s.order is not None:
            n_fim += 1
            n_spm += s.order is Order.SPM
    # Binomial: 3 standard deviations are ~0.014 (FIM) and ~0.024 (SPM share).
    assert abs(n_fim / n - 0.9) < 0.015
    assert abs(n_spm / n_fim - 0.5) < 0.025
    assert all(fim_split(DOC, random.Random(1), FimRates(0.0)).order is None for _ in range(5))
    r = FimRates(fim_rate=1.0, spm_rate=0.0)
    assert {fim_split(DOC, random.Random(i), r).order for i in range(50)} == {Order.PSM}
    # Seeded: the same rng state gives the same split.
    assert fim_split(DOC, random.Random(7)) == fim_split(DOC, random.Random(7))
    # Character level: middles start and end anywhere, not only at token or line boundaries.
    cuts = {len(fim_split(DOC, random.Random(i), FimRates(1.0)).prefix) for i in range(400)}
    assert len(cuts) > len(DOC) // 2


CODE = ("import os\n\n\nclass Walker:\n    def __init__(self, root):\n        self.root = root\n"
        "\n    def files(self):\n        for d, _, names in os.walk(self.root):\n"
        "            for n in names:\n                yield os.path.join(d, n)\n\n\n"
        "def main(argv):\n    for name in Walker(argv[1]).files():\n        print(name)\n"
        "    return 0\n")


def test_line_cuts_are_where_an_editor_asks() -> None:
    rates = FimRates(fim_rate=1.0, line_rate=1.0, max_lines=4)
    lines = CODE.splitlines(keepends=True)
    starts = [sum(map(len, lines[:i])) for i in range(len(lines) + 1)]
    kinds: dict[str, int] = {"col0": 0, "indent": 0, "inside": 0}
    n_lines = []
    for i in range(2000):
        s = fim_split(CODE, random.Random(i), rates)
        assert s.document == CODE and s.middle
        a, b = len(s.prefix), len(s.prefix) + len(s.middle)
        # The middle ends at a line's end; its newline starts the suffix, as in the editor.
        assert s.suffix.startswith("\n") or not s.suffix
        assert b + 1 in starts or b == len(CODE)
        assert not s.middle.endswith("\n")
        row = max(k for k in range(len(lines)) if starts[k] <= a)
        line = lines[row]
        assert line.strip(), "the cursor is never on a blank line"
        col = a - starts[row]
        indent = len(line) - len(line.lstrip())
        if indent:  # on top-level lines column 0 and the indentation are the same place
            kinds["col0" if col == 0 else "indent" if col == indent else "inside"] += 1
        n_lines.append(starts.index(b + 1) - row)
    assert 1 <= min(n_lines) and max(n_lines) == 4
    # Half are drawn as one line; blocks cut short at blank lines or the end add some more.
    assert 0.47 < n_lines.count(1) / len(n_lines) < 0.65
    # 40 % at column 0, 30 % after the indentation, the rest inside the code (some of which
    # lands on the indentation again).
    total = sum(kinds.values())
    assert 0.35 < kinds["col0"] / total < 0.45 and 0.27 < kinds["indent"] / total < 0.4
    assert kinds["inside"] / total > 0.2
    # Nothing to cut at: no non-blank line.
    assert line_cut("\n\n  \n", random.Random(0), 4) is None
    assert line_cut("x = 1", random.Random(0), 4)[1] == 5  # no final newline: to the end
    a, b = line_cut("a\r\nb\r\n", random.Random(0), 1)
    assert "a\r\nb\r\n"[b:b + 2] == "\r\n"
    assert fim_split("\n\n", random.Random(0), rates).document == "\n\n"


def test_line_rate_zero_is_the_uniform_recipe_draw_for_draw() -> None:
    """Runs started before line cuts existed resume on exactly the rows they would have seen."""
    for i in range(200):
        rng, old = random.Random(i), random.Random(i)
        s = fim_split(CODE, rng, FimRates(0.9, 0.5, line_rate=0.0))
        if old.random() >= 0.9:
            assert s.order is None
        else:
            a, b = sorted((old.randint(0, len(CODE)), old.randint(0, len(CODE))))
            order = Order.SPM if old.random() < 0.5 else Order.PSM
            assert s == FimSplit(CODE[:a], CODE[a:b], CODE[b:], order)
        assert rng.random() == old.random()  # the same number of draws
    with pytest.raises(ValueError, match="line_rate=1.5"):
        FimRates(line_rate=1.5)


@pytest.mark.parametrize("order", [Order.PSM, Order.SPM])
def test_example_is_the_daemons_prompt_plus_the_middle(order: Order) -> None:
    tok = char_tok()
    lay = Layout(tok)
    ctx = [ContextFile("shop/money.py", REPO["shop/money.py"]),
           ContextFile("shop/tax.py", REPO["shop/tax.py"])]
    text = REPO["shop/cart.py"]
    split = FimSplit(text[:40], text[40:71], text[71:], order)
    got = lay.example(split, "shop/cart.py", ctx)
    prompt = assemble(CG, tok, prefix=split.prefix, suffix=split.suffix,
                      budget=Budget(total=100_000), path="shop/cart.py", context=ctx, order=order)
    assert not prompt.prefix_truncated and prompt.context_files == ["shop/money.py", "shop/tax.py"]
    sep = tok.token_id("<|file_separator|>")
    assert got == prompt.tokens + tok.tokenize(split.middle) + [sep]
    # Without repository context too.
    bare = assemble(CG, tok, prefix=split.prefix, suffix=split.suffix,
                    budget=Budget(total=100_000), path="shop/cart.py", order=order)
    assert lay.example(split, "shop/cart.py") == bare.tokens + tok.tokenize(split.middle) + [sep]


@pytest.mark.parametrize("name, order", [
    ("gemma3-fim", Order.PSM), ("gemma3-fim", Order.SPM), ("codegemma", Order.PSM),
    ("codegemma", Order.SPM), ("qwen2.5-coder", Order.PSM), ("starcoder", Order.PSM),
    ("starcoder", Order.SPM)])
def test_training_layout_renders_the_daemons_prompt(name: str, order: Order) -> None:
    """Train as you serve: the prompt part of an example is token for token what the daemon's
    ``assemble`` sends for the same cursor, repository header and file separators included."""
    tok = char_tok()
    template = TEMPLATES[name]
    ctx = [ContextFile("shop/money.py", REPO["shop/money.py"]),
           ContextFile("shop/tax.py", REPO["shop/tax.py"])]
    text = REPO["shop/cart.py"]
    split = FimSplit(text[:40], text[40:71], text[71:], order)
    for files, repo in ((ctx, ""), (ctx, "shop"), ([], "")):
        lay = Layout(tok, template, repo_name=repo)
        got = lay.example(split, "shop/cart.py", files)
        prompt = assemble(template, tok, prefix=split.prefix, suffix=split.suffix,
                          budget=Budget(total=100_000), path="shop/cart.py", context=files,
                          order=order, repo_name=repo)
        assert prompt.context_files == [f.path for f in files] and not prompt.prefix_truncated
        assert list(got) == prompt.tokens + tok.tokenize(split.middle) + [lay.end_id]
        rendered = tok.render(list(got))
        if "repo" in template.sentinels and files:
            head = f"{template.sentinels['repo'][0]}{repo or 'workspace'}\n" \
                f"{template.sentinels['sep'][0]}shop/money.py\n"
            assert rendered.startswith(head) and rendered.count("workspace\n") == (not repo)
        # A plain document carries the same header: the prompt before its FIM layout.
        fim = sum(len(lay.ids[p]) for p in template.layout(order) if p in lay.ids) + \
            len(tok.tokenize(split.prefix)) + len(tok.tokenize(split.suffix))
        header = prompt.tokens[:len(prompt.tokens) - fim]
        plain = lay.example(FimSplit(text, "", "", None), "shop/cart.py", files)
        assert list(plain) == header + tok.tokenize(text) + [tok.eos_id]


def test_sentinels_exactly_once() -> None:
    tok = char_tok()
    lay = Layout(tok)
    ids = {r: tok.token_id(CG.sentinels[r][0]) for r in ("pre", "suf", "mid", "sep")}
    ctx = [ContextFile("a.py", "x = 1\n")]
    rng = random.Random(3)
    seen = set()
    for _ in range(200):
        s = fim_split(DOC, rng)
        toks = lay.example(s, "m.py", ctx)
        assert toks[0] == tok.bos_id and toks.count(tok.bos_id) == 1
        if s.order is None:
            assert all(toks.count(ids[r]) == 0 for r in ("pre", "suf", "mid"))
            assert toks[-1] == tok.eos_id
        else:
            assert all(toks.count(ids[r]) == 1 for r in ("pre", "suf", "mid"))
            # SPM puts the suffix first: <pre><suf>S<mid>P M
            i = {r: toks.index(ids[r]) for r in ("pre", "suf", "mid")}
            assert i["pre"] < i["suf"] < i["mid"]
            if s.order is Order.SPM:
                assert i["suf"] == i["pre"] + 1
            assert toks[-1] == ids["sep"]
        # One separator per context file, one for the current file's header (+ the end).
        assert toks.count(ids["sep"]) == 2 + (s.order is not None)
        seen.add(s.order)
    assert seen == {None, Order.PSM, Order.SPM}


# --- repository packing -----------------------------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for p, t in files.items():
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text(t)


def test_packing_order_is_topological_and_pairs_tests() -> None:
    tok = char_tok()
    g = DependencyGraph.from_texts(REPO)
    count = TokenCounter(tok)
    sel = select_for_target(g, REPO, "shop/cart.py", count, 10_000)
    paths = [f.path for f in sel.files]
    assert set(paths) == {"shop/money.py", "shop/tax.py", "tests/test_cart.py"}
    assert "shop/other.py" not in paths
    # Dependencies before the files that use them.
    for i, p in enumerate(paths):
        for dep in g.deps(p):
            if dep in paths:
                assert paths.index(dep) < i, (dep, p)
    assert paths.index("shop/money.py") < paths.index("shop/tax.py")
    # A test target: its implementation sits right before it (the last context file).
    sel = select_for_target(g, REPO, "tests/test_cart.py", count, 10_000)
    assert sel.files[-1].path == "shop/cart.py"
    assert [f.path for f in sel.files].index("shop/money.py") < len(sel.files) - 1


@pytest.mark.parametrize("budget", [10_000, 260])
def test_packing_equals_the_daemons_selection(tmp_path: Path, budget: int) -> None:
    """Training context == what the daemon's WorkspaceIndex selects for the same file."""
    _write(tmp_path, REPO)
    tok = char_tok()
    index = WorkspaceIndex([tmp_path])
    index.build()
    try:
        g = DependencyGraph.from_texts(REPO)
        for target in ("shop/cart.py", "shop/tax.py", "tests/test_cart.py", "shop/money.py"):
            daemon = index.select_context(tmp_path / target, REPO[target], "", tok, budget)
            assert daemon.status == "ok"
            ours = select_for_target(g, REPO, target, TokenCounter(tok), budget)
            assert ours.files == daemon.files, target
        if budget < 1000:  # the tight budget really cut something
            assert any(r.form != "whole" for r in daemon.rows)
    finally:
        index.stop()


def test_examples_fit_and_rows_pack() -> None:
    tok = char_tok()
    tok.pad_id = 0  # type: ignore[attr-defined]
    cfg = DataConfig(seq_len=200, rates=FimRates(1.0), eval_share=0.0)
    b = ExampleBuilder(REPO, Layout(tok), cfg)
    ex = [b.build(p, random.Random(p)) for p in sorted(REPO) if REPO[p]]
    assert all(len(e) <= cfg.seq_len + 1 for e in ex)
    # With room, cart's example carries its dependencies' text; without, only itself.
    roomy = ExampleBuilder(REPO, Layout(tok), DataConfig(seq_len=600, eval_share=0.0))
    cart = tok.render(roomy.build("shop/cart.py", random.Random(0)))
    assert "shop/money.py\n" + REPO["shop/money.py"] in cart and "shop/tax.py\n" in cart
    assert "shop/money.py" not in tok.render(b.build("shop/cart.py", random.Random(0)))
    rows = list(pack_rows(ex, cfg.seq_len, 0))
    assert all(r.input_ids.shape == (cfg.seq_len,) for r in rows)
    # Every example token is in a row exactly once, as input and as the next label.
    assert sum(int((r.labels != IGNORE_INDEX).sum()) for r in rows) == sum(len(e) - 1 for e in ex)
    for r in rows:
        pad = r.segment_ids == -1
        assert (r.labels[pad] == IGNORE_INDEX).all()
        for s in set(r.segment_ids.tolist()) - {-1}:
            pos = r.position_ids[r.segment_ids == s]
            assert pos.tolist() == list(range(len(pos)))  # each example from position 0
    batch = collate(rows[:2])
    assert batch["input_ids"].shape == (2, cfg.seq_len)
    # Short examples pack several to a row.
    short = ExampleBuilder(REPO, Layout(tok), DataConfig(seq_len=200, example_len=90,
                                                         rates=FimRates(1.0), eval_share=0.0))
    ex = [short.build(p, random.Random(p)) for p in sorted(REPO) if REPO[p]]
    assert all(len(e) <= 91 for e in ex) and max(map(len, ex)) > 80
    rows = list(pack_rows(ex, 200, 0))
    assert len(rows) < len(ex)
    assert sum(len(set(r.segment_ids.tolist()) - {-1}) for r in rows) == len(ex)


def test_row_stream_is_deterministic_and_resumable() -> None:
    from model.data.corpus import Corpus

    tok = char_tok()
    tok.pad_id = 0  # type: ignore[attr-defined]
    corpus = Corpus("repo", {p: t for p, t in REPO.items() if t})
    cfg = DataConfig(seq_len=128, eval_share=0.0, seed=5)
    s1 = RowStream(corpus, Layout(tok), cfg)
    it = s1.rows()
    first = [next(it) for _ in range(12)]  # crosses epochs
    s2 = RowStream(corpus, Layout(tok), cfg)
    it2 = s2.rows(start=7)
    for r in first[7:]:
        assert torch.equal(next(it2).input_ids, r.input_ids)
    other = RowStream(corpus, Layout(tok), DataConfig(seq_len=128, eval_share=0.0, seed=6))
    assert any(not torch.equal(a.input_ids, b.input_ids)
               for a, b in zip(first, other.rows()))


def test_corpus_reader_uses_the_daemons_filters(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/good.py": "import os\n",
        "pkg/gen.py": "x = 1\n",
        ".gitignore": "pkg/gen.py\n",
        "node_modules/lib/index.js": "module.exports = 1\n",
        ".venv/lib/x.py": "y = 2\n",
        ".env": "TOKEN=abc\n",
        "pkg/config_secret.py": "password = 'x'\n",
        "pkg/leak.py": "KEY = 'AKIAABCDEFGHIJKLMNOP'\n",
        "pkg/fim.py": "s = '<|fim_middle|>'\n",
        "pkg/notes.txt": "plain text\n",
        "web/app.ts": "import { a } from './a';\n",
    })
    (tmp_path / "pkg" / "blob.py").write_bytes(b"x = 1\x00\x01\n")
    (tmp_path / "pkg" / "big.py").write_text("# " + "x" * 5000 + "\n")
    c = read_corpus(tmp_path, max_file_bytes=4096)
    assert sorted(c.files) == ["pkg/good.py", "web/app.ts"]
    assert c.skipped.get("contains a FIM sentinel") == 1
    assert "pkg/notes.txt" in read_corpus(tmp_path, source_only=False).files


def test_prefetch_keeps_order_and_raises_producer_errors() -> None:
    from model.data.dataset import prefetch

    def rows(n: int, fail: bool):
        for i in range(n):
            yield i
        if fail:
            raise RuntimeError("tokenizer broke")

    assert list(prefetch(rows(200, False), depth=4)) == list(range(200))  # type: ignore[arg-type]
    got = []
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        for x in prefetch(rows(5, True)):  # type: ignore[arg-type]
            got.append(x)
    assert got == list(range(5))


def test_heldout_line_tasks_put_the_cursor_after_the_indentation() -> None:
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from heldout_lines import line_tasks

    texts = {"a.py": CODE, "b.py": "\n\n   \n", "c.py": "x = 1\r\ny = 2\r\n"}
    tasks = line_tasks(texts, ["a.py", "b.py", "c.py"], per_file=3, seed=0)
    assert [t.path for t in tasks] == ["a.py"] * 3 + ["c.py"] * 2  # b.py has no code
    for t in tasks:
        lines = texts[t.path].splitlines(keepends=True)
        assert t.prefix + t.expected + t.suffix == texts[t.path]
        line = lines[t.line].rstrip("\r\n")
        assert t.expected == line.lstrip() and t.expected
        assert t.suffix.startswith(("\n", "\r\n")) or not t.suffix
    assert line_tasks(texts, ["a.py"], 3, 0) == tasks[:3]  # seeded
    assert line_tasks(texts, ["a.py"], 3, 1) != tasks[:3]


def test_adapter_curve_pairs_each_checkpoint_with_the_baseline_and_picks_the_best(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json as _json
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import adapter_curve

    def write(name: str, exact: list[bool], meta: dict | None = None) -> None:
        rows = [{"path": f"f{i}.py", "line": i, "exact": e} for i, e in enumerate(exact)]
        (tmp_path / f"{name}.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows))
        if meta is not None:
            (tmp_path / f"{name}.json").write_text(_json.dumps(meta))

    write("prefix-only", [True, False, False, True])
    write("run-step-000100", [True, True, False, False], {"step": 100, "tokens_seen": 1000})
    write("run-step-000300", [True, True, True, True], {"step": 300, "tokens_seen": 3000})
    write("run-step-000200", [False, True, True, True], {"step": 200, "tokens_seen": 2000})
    assert adapter_curve.main(["summary", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("| run-")]
    assert [x.split("|")[1].strip() for x in lines] == ["run-step-000100", "run-step-000200",
                                                         "run-step-000300"]  # by tokens seen
    assert "| 50.0 % (2) | +0.0 ± 40.8 | 1 / 1 |" in lines[0]
    assert "| 100.0 % (4) | +50.0 ± 28.9 | 2 / 0 |" in lines[2]
    assert "stop at: run-step-000300 (4/4 exact, 3,000 tokens seen)" in out
    csv_rows = (tmp_path / "curve.csv").read_text().splitlines()
    assert csv_rows[0].startswith("name,step,tokens_seen") and len(csv_rows) == 4
    assert adapter_curve.main(["summary", "--dir", str(tmp_path), "--baseline", "nope"]) == 2
