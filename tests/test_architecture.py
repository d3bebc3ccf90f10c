"""The code's shape, checked: no import circles, plain modules free of LSP, a thin server.py,
no oversized modules, and no words a reader of the repository could not follow."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("lsp_server", "model", "quantize")
PLAIN = ("lsp_server/completion", "lsp_server/context", "lsp_server/prompt",
         "lsp_server/engine", "lsp_server/models", "lsp_server/quality", "model", "quantize")
"""Packages that never import pygls or lsprotocol: the CLI, the benchmarks and model/ use them."""
MAX_LINES = 450
LARGER: dict[str, str] = {}
"""Modules allowed over MAX_LINES, with the reason."""


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ours that ``name`` imports when it runs (lazy imports inside functions count
    too; imports for type annotations only do not)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                up = base[:len(base) - node.level + 1]
                mod = ".".join(up + ([mod] if mod else []))
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                found.add(t)
    return found


def test_no_import_circles() -> None:
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    # Tarjan's strongly connected components; any component of two or more is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, circles


def test_plain_modules_import_no_lsp() -> None:
    offenders = []
    for area in PLAIN:
        for path in (REPO / area).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"^\s*(from|import) (pygls|lsprotocol)\b", text, re.M):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders


def test_server_is_glue_and_modules_stay_small() -> None:
    server = (REPO / "lsp_server" / "server.py").read_text(encoding="utf-8").count("\n")
    assert server <= 250, server
    big = {str(p.relative_to(REPO)): n for p in _modules().values()
           if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_LINES
           and str(p.relative_to(REPO)) not in LARGER}
    assert not big, big


def test_no_issue_numbers_in_the_repository() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    hits = []
    for f in files:
        path = REPO / f
        if path.suffix not in (".py", ".md", ".lua", ".ts", ".json", ".toml", ".sh", "") \
                or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{f}: {m.group(0)}" for m in re.finditer(r"(?i)\bissue #?[0-9]+", text)]
    assert not hits, hits
