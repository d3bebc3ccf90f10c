"""Ranking, layout, test pairing, packing under a budget, and stability between keystrokes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.config import ContextConfig
from lsp_server.context import WorkspaceIndex
from lsp_server.prompt.assemble import fixed_tokens
from lsp_server.context.graph import DependencyGraph
from lsp_server.context.outline import outline
from lsp_server.context.pairing import test_partner as partner_of
from lsp_server.context.selection import DEPENDENCY, Candidate, layout
from lsp_server.prompt import Budget, assemble, get_template
from tests.fake_tokenizer import CharTokenizer


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def index(root: Path, **cfg: object) -> WorkspaceIndex:
    idx = WorkspaceIndex([root], ContextConfig(watch=False, **cfg))  # type: ignore[arg-type]
    idx.build()
    return idx


LAYERED = {
    "app.py": "import service\nimport util\n\ndef main():\n    return service.handle()\n",
    "service.py": "import repo\nimport models\n\ndef handle():\n    return repo.get()\n",
    "util.py": "def fmt(x):\n    return str(x)\n",
    "repo.py": "import models\nimport db\n\ndef get():\n    return models.Row()\n",
    "models.py": "import base\n\nclass Row(base.Base):\n    pass\n",
    "db.py": "CONN = None\n",
    "base.py": "class Base:\n    pass\n",
    "cli.py": "import app\n",
    "tests/test_app.py": "import app\n",
}


def test_distance_ranking_and_topological_layout(tmp_path: Path) -> None:
    idx = index(write_tree(tmp_path, LAYERED))
    text = LAYERED["app.py"]
    sel = idx.select_context(tmp_path / "app.py", text, "", CharTokenizer(), 100_000)
    dist = {r.path: r.distance for r in sel.rows}
    assert dist == {"service.py": 1, "util.py": 1, "repo.py": 2, "models.py": 2, "db.py": 3,
                    "base.py": 3, "tests/test_app.py": 1, "cli.py": 1}
    order = [f.path for f in sel.files]
    # Dependencies before the files that use them.
    g = idx.roots[0].graph
    for user in order:
        for dep in g.deps(user):
            if dep in order:
                assert order.index(dep) < order.index(user), (dep, user, order)
    # Farther material first, nearest last (next to the current file); importers earliest.
    assert order == ["cli.py", "tests/test_app.py", "base.py", "db.py", "models.py", "repo.py",
                     "service.py", "util.py"]
    reasons = {r.path: r.reason for r in sel.rows}
    assert reasons["repo.py"] == "import via service.py"
    assert reasons["tests/test_app.py"] == "test pair"
    assert reasons["cli.py"] == "importer"


def test_importers_rank_after_dependencies(tmp_path: Path) -> None:
    idx = index(write_tree(tmp_path, LAYERED), max_files=3, test_pairing=False)
    sel = idx.select_context(tmp_path / "app.py", LAYERED["app.py"], "", CharTokenizer(),
                             100_000)
    chosen = {r.path for r in sel.rows if not r.form.startswith("skipped")}
    assert chosen == {"service.py", "util.py", "repo.py"}
    assert {r.path: r.form for r in sel.rows}["cli.py"] == "skipped: file limit"


def test_cycles_are_broken_deterministically() -> None:
    g = DependencyGraph.from_texts({"a.py": "import b\n", "b.py": "import c\n",
                                    "c.py": "import a\nimport d\n", "d.py": ""})
    cands = [Candidate("b.py", 1, DEPENDENCY), Candidate("c.py", 2, DEPENDENCY, via="b.py"),
             Candidate("d.py", 3, DEPENDENCY, via="c.py")]
    want = ["d.py", "c.py", "b.py"]
    for perm in (cands, cands[::-1], [cands[1], cands[0], cands[2]]):
        assert [c.path for c in layout(perm, lambda p: g.deps(p).keys())] == want
    # A pure cycle among the chosen: the farthest file goes first, then the order holds.
    g2 = DependencyGraph.from_texts({"x.py": "import y\n", "y.py": "import z\n",
                                     "z.py": "import y\n"})
    c2 = [Candidate("y.py", 1, DEPENDENCY), Candidate("z.py", 2, DEPENDENCY, via="y.py")]
    assert [c.path for c in layout(c2, lambda p: g2.deps(p).keys())] == ["z.py", "y.py"]
    assert [c.path for c in layout(c2[::-1], lambda p: g2.deps(p).keys())] == ["z.py", "y.py"]


@pytest.mark.parametrize(("path", "partner"), [
    ("pkg/shop/cart.py", "tests/shop/test_cart.py"),
    ("tests/shop/test_cart.py", "pkg/shop/cart.py"),
    ("pkg/shop/money.py", "pkg/shop/money_test.py"),
    ("web/src/cart.ts", "web/src/cart.test.ts"),
    ("web/src/cart.test.ts", "web/src/cart.ts"),
    ("web/src/price.tsx", "web/src/__tests__/price.spec.tsx"),
    ("svc/cart.go", "svc/cart_test.go"),
    ("svc/cart_test.go", "svc/cart.go"),
    ("app/src/main/java/a/Cart.java", "app/src/test/java/a/CartTest.java"),
    ("crate/src/parser.rs", "crate/tests/parser.rs"),
    ("pkg/shop/orphan.py", None),
])
def test_unit_test_pairing(path: str, partner: str | None) -> None:
    files = ["pkg/shop/cart.py", "tests/shop/test_cart.py", "tests/other/test_cart.py",
             "pkg/shop/money.py", "pkg/shop/money_test.py", "pkg/shop/orphan.py",
             "web/src/cart.ts", "web/src/cart.test.ts", "web/src/price.tsx",
             "web/src/__tests__/price.spec.tsx", "svc/cart.go", "svc/cart_test.go",
             "app/src/main/java/a/Cart.java", "app/src/test/java/a/CartTest.java",
             "crate/src/parser.rs", "crate/tests/parser.rs"]
    g = DependencyGraph.from_texts({f: "" for f in files})
    assert partner_of(path, g.tree) == partner


def test_near_files_whole_far_files_outlined_used_symbols_first(tmp_path: Path) -> None:
    models = ("import base\n\n\nclass Unused:\n    def a(self):\n        return 1\n\n\n"
              "class Cart:\n    '''A cart.\n\n    More.'''\n    def total(self) -> int:\n"
              "        s = 0\n        for i in range(10):\n            s += i\n        return s\n")
    files = {"app.py": "import service\n", "service.py": "import models\n\nX = 1\n",
             "models.py": models, "base.py": "class Base:\n    pass\n"}
    idx = index(write_tree(tmp_path, files))
    text = "import service\n\ncart = service.models.Cart()\n"
    sel = idx.select_context(tmp_path / "app.py", text, "", CharTokenizer(), 100_000)
    forms = {r.path: r.form for r in sel.rows}
    assert forms == {"service.py": "whole", "models.py": "outline", "base.py": "whole"}
    out = {f.path: f.text for f in sel.files}
    assert out["service.py"] == files["service.py"]
    body = out["models.py"]
    assert "s += i" not in body and "def total(self) -> int:" in body
    assert '"""A cart."""' in body and "More." not in body
    assert body.index("class Cart") < body.index("class Unused")  # used symbol first
    assert {r.path: r.used_symbols for r in sel.rows}["models.py"] == 1


def test_budget_cuts_outlines_and_skips(tmp_path: Path) -> None:
    big = "".join(f"def f{i}(x):\n    '''Doc {i}.'''\n    return x + {i}\n\n" for i in range(80))
    files = {"app.py": "import big\nimport small\n", "big.py": big, "small.py": "Y = 2\n"}
    idx = index(write_tree(tmp_path, files))
    tok = CharTokenizer()
    for budget in (150, 400, 1200, 6000):
        sel = idx.select_context(tmp_path / "app.py", files["app.py"], "", tok, budget)
        assert sel.used_tokens <= budget
        forms = {r.path: r.form for r in sel.rows}
        if budget == 400:
            assert forms["big.py"] == "outline (cut)"
            assert "def f0(x)" in sel.files[0].text or "def f0(x)" in sel.files[1].text
        if budget == 6000:
            assert forms["big.py"] in ("outline", "whole")
        # Whatever was chosen fits the assembler's share of a prompt of that size.
        total = int(budget / 0.35) + 8
        prompt = assemble(get_template("codegemma"), tok, prefix=files["app.py"], suffix="",
                          budget=Budget(total=total), path="app.py", context=sel.files)
        assert Budget(total=total).context_allowance(
            fixed_tokens(get_template("codegemma"), tok)) >= budget
        assert prompt.context_files == [f.path for f in sel.files], budget


def _context_section(idx: WorkspaceIndex, tok: CharTokenizer, path: Path, prefix: str,
                     suffix: str) -> list[int]:
    sel = idx.select_context(path, prefix, suffix, tok, 3000)
    p = assemble(get_template("codegemma"), tok, prefix=prefix, suffix=suffix,
                 budget=Budget(total=9000), path="app.py", context=sel.files)
    return p.tokens[: p.n_context + 1]


def test_context_is_identical_across_keystrokes(tmp_path: Path) -> None:
    idx = index(write_tree(tmp_path, LAYERED))
    path = tmp_path / "app.py"
    text = LAYERED["app.py"] + "\ndef other():\n    "
    tok = CharTokenizer()
    first = idx.select_context(path, text, "", tok, 3000)
    typed = [text + "ret", text + "return ut", text + "return util.f"]
    sections = [_context_section(idx, tok, path, t, "\n") for t in [text] + typed]
    assert all(s == sections[0] for s in sections)
    again = idx.select_context(path, typed[-1], "", tok, 3000)
    assert again.cached and [f.path for f in again.files] == [f.path for f in first.files]
    # A new import changes the graph: the selection follows.
    changed = idx.select_context(path, "import db\n" + text, "", tok, 3000)
    assert not changed.cached
    assert [r.distance for r in changed.rows if r.path == "db.py"] == [1]
    # A chosen file edited in the editor changes the context too.
    idx.update_buffer(tmp_path / "util.py", "def fmt(x):\n    return repr(x)\n")
    edited = idx.select_context(path, text, "", tok, 3000)
    assert not edited.cached
    assert "repr(x)" in {f.path: f.text for f in edited.files}["util.py"]


def test_buffer_overlay_and_close(tmp_path: Path) -> None:
    idx = index(write_tree(tmp_path, LAYERED))
    idx.update_buffer(tmp_path / "new_mod.py", "Z = 1\n")  # unsaved new file
    idx.update_buffer(tmp_path / "util.py", "import new_mod\n")
    sel = idx.select_context(tmp_path / "app.py", LAYERED["app.py"], "", CharTokenizer(), 9000)
    assert {"new_mod.py", "util.py"} <= {f.path for f in sel.files}
    idx.close_buffer(tmp_path / "util.py")
    idx.close_buffer(tmp_path / "new_mod.py")
    sel = idx.select_context(tmp_path / "app.py", LAYERED["app.py"], "", CharTokenizer(), 9000)
    assert "new_mod.py" not in {f.path for f in sel.files}
    assert {f.path: f.text for f in sel.files}["util.py"] == LAYERED["util.py"]


def test_multi_root_paths_are_prefixed(tmp_path: Path) -> None:
    a = write_tree(tmp_path / "api", {"main.py": "import lib\n", "lib.py": "A = 1\n"})
    b = write_tree(tmp_path / "web", {"main.ts": "import './x'\n", "x.ts": "export {}\n"})
    idx = WorkspaceIndex([a, b], ContextConfig(watch=False))
    idx.build()
    sel = idx.select_context(a / "main.py", "import lib\n", "", CharTokenizer(), 9000)
    assert [f.path for f in sel.files] == ["api/lib.py"]
    sel = idx.select_context(b / "main.ts", "import './x'\n", "", CharTokenizer(), 9000)
    assert [f.path for f in sel.files] == ["web/x.ts"]


def test_index_not_ready_answers_immediately(tmp_path: Path) -> None:
    idx = WorkspaceIndex([write_tree(tmp_path, LAYERED)], ContextConfig(watch=False))
    sel = idx.select_context(tmp_path / "app.py", "", "", CharTokenizer(), 9000)
    assert sel.status == "indexing" and sel.files == []


@pytest.mark.parametrize(("lang", "text", "kept", "dropped"), [
    ("go", "package a\n\nimport \"fmt\"\n\n// Sum adds.\nfunc Sum(a, b int) int {\n"
           "\treturn a + b\n}\n\ntype T struct {\n\tN int\n}\n",
     ["import \"fmt\"", "// Sum adds.", "func Sum(a, b int) int { ... }", "\tN int"],
     ["return a + b"]),
    ("javascript", "import { a } from './a';\nexport class K {\n  m(x) {\n    return x * 2;\n"
                   "  }\n}\nexport function f(y) {\n  return y;\n}\n",
     ["import { a } from './a';", "export class K {", "  m(x) { ... }",
      "export function f(y) { ... }"], ["return x * 2", "return y"]),
    ("rust", "use std::io;\npub struct S { a: i32 }\nimpl S {\n    pub fn new() -> Self {\n"
             "        S { a: 1 }\n    }\n}\n",
     ["use std::io;", "impl S {", "    pub fn new() -> Self { ... }"], ["S { a: 1 }"]),
    ("jvm", "package a;\nimport b.C;\npublic class K {\n  private int n;\n  public int get() {\n"
            "    return n;\n  }\n}\n",
     ["package a;", "  private int n;", "  public int get() { ... }"], ["return n;"]),
    ("c", "#include \"a.h\"\nint add(int a,\n        int b)\n{\n    return a + b;\n}\n",
     ["#include \"a.h\"", "int add(int a,", "{ ... }"], ["return a + b;"]),
    ("python", "def f(:\n    pass\nclass K:\n    def m(self):\n        return 1\n",
     ["def f(:", "class K:", "    def m(self):"], ["return 1"]),
])
def test_outlines_per_language(lang: str, text: str, kept: list[str], dropped: list[str]) -> None:
    body = "".join(i.text for i in outline(lang, text))
    for line in kept:
        assert line in body.splitlines(), (line, body)
    for frag in dropped:
        assert frag not in body, (frag, body)


# A repository with two languages, a test partner, an importer, a file far enough to be
# outlined and one the budget must cut.
SHARED = {
    "shop/__init__.py": "",
    "shop/money.py": "class Money:\n    def __init__(self, cents):\n        self.cents = cents\n\n"
                     "    def add(self, other):\n        return Money(self.cents + other.cents)\n",
    "shop/tax.py": "from shop.money import Money\n\n\ndef vat(m: Money) -> Money:\n"
                   "    return Money(m.cents * 21 // 100)\n",
    "shop/cart.py": "from shop.money import Money\nfrom shop.tax import vat\n\n\nclass Cart:\n"
                    "    def __init__(self):\n        self.items = []\n\n"
                    "    def total(self):\n        return vat(Money(100))\n",
    "shop/report.py": "from shop.cart import Cart\n\n\ndef report():\n    return Cart().total()\n",
    "shop/big.py": "".join(f"def f{i}(x):\n    '''Doc {i}.'''\n    return x + {i}\n\n"
                           for i in range(60)),
    "shop/app.py": "import shop.cart\nimport shop.big\nimport requests\n\n\n"
                   "def main():\n    return shop.cart.Cart().total() + shop.big.f3(1)\n",
    "tests/test_cart.py": "from shop.cart import Cart\n\n\ndef test_total():\n"
                          "    assert Cart().total().cents == 21\n",
    "web/price.ts": "export function price(c: number): string {\n  return `${c / 100}`;\n}\n",
    "web/cart.ts": "import { price } from './price';\n\nexport const show = (c: number) => "
                   "price(c);\n",
    "web/cart.test.ts": "import { show } from './cart';\n\ntest('show', () => show(1));\n",
}


@pytest.mark.parametrize("budget", [100_000, 700, 260])
def test_training_selection_equals_the_daemons(tmp_path: Path, budget: int) -> None:
    """Training (model/data/repo_select.py) and the daemon select the same context for the same
    repository and cursor: the same files, texts, forms and order."""
    from lsp_server.context.packing import TokenCounter
    from model.data.repo_select import select_for_target

    idx = index(write_tree(tmp_path, SHARED))
    tok = CharTokenizer()
    graph = DependencyGraph.from_texts(SHARED)
    cut_any = False
    for target in ("shop/cart.py", "shop/app.py", "tests/test_cart.py", "shop/money.py",
                   "web/cart.ts", "web/price.ts"):
        text = SHARED[target]
        cursor = text.index("\n\n") + 1 if "\n\n" in text else len(text) // 2
        daemon = idx.select_context(tmp_path / target, text[:cursor], text[cursor:], tok,
                                    budget)
        assert daemon.status == "ok"
        training = select_for_target(graph, SHARED, target, TokenCounter(tok), budget)
        assert training.files == daemon.files, target
        assert training.rows == daemon.rows, target
        cut_any |= any(r.form != "whole" for r in daemon.rows)
        if budget == 100_000 and target == "shop/app.py":
            assert [f.path for f in daemon.files][-1] == "shop/cart.py"
            assert "shop/big.py" in [f.path for f in daemon.files]
    assert cut_any or budget == 100_000
