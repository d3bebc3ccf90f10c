"""Repository context with the real model tokenizer, and `codefill context` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.completion.session import ModelSession
from lsp_server.config import ContextConfig
from lsp_server.context import WorkspaceIndex
from tests.conftest import REPO

pytestmark = pytest.mark.model

FILES = {
    ".git/HEAD": "ref: refs/heads/main\n",
    ".env": "API_TOKEN=SECRET_DOTENV_VALUE\n",
    "shop/__init__.py": "",
    "shop/money.py": ('"""Money in cents."""\n\nfrom dataclasses import dataclass\n\n\n'
                      "@dataclass(frozen=True)\nclass Money:\n    cents: int\n\n"
                      "    def add(self, other: 'Money') -> 'Money':\n"
                      "        return Money(self.cents + other.cents)\n"),
    "shop/cart.py": ("from .money import Money\nfrom . import tax\n\n\nclass Cart:\n"
                     "    def __init__(self) -> None:\n        self.items: list[Money] = []\n\n"
                     "    def total(self) -> Money:\n        t = Money(0)\n"
                     "        for m in self.items:\n            t = t.add(m)\n"
                     "        return tax.apply(t)\n"),
    "shop/tax.py": ("from .money import Money\n\nRATE = 0.2\n\n\ndef apply(m: Money) -> Money:\n"
                    "    return Money(int(m.cents * (1 + RATE)))\n"),
    "tests/test_cart.py": "from shop.cart import Cart\n\n\ndef test_total():\n    assert Cart()\n",
}


def write(root: Path) -> Path:
    for rel, text in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_selected_files_fit_the_real_prompt(session: ModelSession, tmp_path: Path) -> None:
    root = write(tmp_path)
    idx = WorkspaceIndex([root], ContextConfig(watch=False))
    idx.build()
    tok = session.tokenizer
    cart = FILES["shop/cart.py"]
    cut = cart.index("        return tax")
    allowance = session.context_allowance(session.budget(session.config.prompt.max_tokens))
    for budget in (40, 80, 160, allowance):
        sel = idx.select_context(root / "shop/cart.py", cart[:cut], cart[cut:], tok, budget)
        assert sel.used_tokens <= budget
        prompt = session.build_prompt(cart[:cut], cart[cut:], path="shop/cart.py",
                                      context=sel.files)
        assert prompt.context_files == [f.path for f in sel.files], budget
        for f, row in zip(sel.files, sel.rows):  # counted costs cover the real tokens
            assert len(tok.tokenize(f"# file: {f.path}\n{f.text}\n")) <= row.tokens
    text = session.engine.llama.detokenize(prompt.tokens).decode("utf-8", "replace")
    assert "class Money" in text and "def apply" in text and "SECRET_DOTENV_VALUE" not in text
    order = [f.path for f in sel.files]
    assert order.index("shop/money.py") < order.index("shop/tax.py")  # dependencies first


def test_prompt_context_prefix_survives_keystrokes(session: ModelSession, tmp_path: Path) -> None:
    root = write(tmp_path)
    idx = WorkspaceIndex([root], ContextConfig(watch=False))
    idx.build()
    cart = FILES["shop/cart.py"]
    cut = cart.index("        return tax")
    prompts = []
    for typed in ("", "r", "re", "ret", "retu"):
        prefix = cart[:cut] + typed
        sel = idx.select_context(root / "shop/cart.py", prefix, cart[cut:], session.tokenizer,
                                 400)
        prompts.append(session.build_prompt(prefix, cart[cut:], path="shop/cart.py",
                                            context=sel.files))
    n = prompts[0].n_context
    assert n > 0
    assert all(p.tokens[: n + 1] == prompts[0].tokens[: n + 1] for p in prompts)


def codefill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lsp_server.cli.main", *args],
                          capture_output=True, text=True, timeout=180, cwd=REPO)


def test_cli_context_table_and_json(tmp_path: Path) -> None:
    root = write(tmp_path / "repo")
    proc = codefill("context", str(root / "shop" / "cart.py"), "--line", "13", "--col", "9")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"root     {root}" in out  # found through .git
    for row in ("shop/money.py", "shop/tax.py", "tests/test_cart.py"):
        assert row in out
    assert "test pair" in out and "every selected file is in the prompt" in out
    proc = codefill("context", str(root / "shop" / "cart.py"), "--budget", "60", "--json",
                    "--show-prompt")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["budget"] == 60 and data["used_tokens"] <= 60
    assert [f["path"] for f in data["files"]] == data["prompt"]["context_files"]
    assert {f["form"] for f in data["files"]} <= {"whole", "outline", "outline (cut)"}
    assert data["skipped"], "a 60-token budget cannot hold every file"
    assert "SECRET_DOTENV_VALUE" not in data["prompt"]["text"]


def test_cli_context_errors(tmp_path: Path) -> None:
    root = write(tmp_path / "repo")
    proc = codefill("context", str(root / "shop" / "cart.py"), "--line", "99")
    assert proc.returncode == 2 and "line 99 is outside" in proc.stderr
    proc = codefill("context", str(root / "shop" / "cart.py"), "--root", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    proc = codefill("context", str(root / "shop" / "cart.py"), "--root", str(root / "tests"))
    assert proc.returncode == 2 and "not under the workspace root" in proc.stderr
