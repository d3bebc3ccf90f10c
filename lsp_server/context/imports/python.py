"""Python imports: statements located by a fast scan, each parsed with ``ast``.

Parsing whole files with ``ast`` costs ~11 s for the standard library; parsing only the import
statements (found by a line scan that also sees imports nested in functions and ``try`` blocks)
gives the same references in a fraction of that. A statement ``ast`` rejects (a file mid-edit)
falls back to a tolerant regex reading of that statement.
"""

from __future__ import annotations

import ast
import posixpath
import re

from ..tree import FileTree
from .base import Extracted, ImportRef, Language, first_existing

_STMT = re.compile(
    r"^[ \t]*(?:from[ \t]+[.\w]+[ \t]+import[ \t]*(?:\([^)]*\)|(?:[^\n\\]|\\\n)*)"
    r"|import[ \t]+(?:[^\n\\]|\\\n)*)", re.M)
_DYNAMIC = re.compile(r"\bimport_module\(\s*['\"]([\w.]+)['\"]")


def _dynamic(text: str) -> list[str]:
    """``importlib.import_module("a.b")`` with a literal name (substring test first: fast)."""
    return _DYNAMIC.findall(text) if "import_module(" in text else []


_TOLERANT_FROM = re.compile(r"from\s+([.\w]+)\s+import\s*\(?([^)]*)")
_TOLERANT_IMPORT = re.compile(r"import\s+(.+)")
_IDENT = re.compile(r"[A-Za-z_]\w*|\*")


# Comments, triple-quoted and one-line strings in one left-to-right pass: an "import" line inside
# a docstring (doctest examples, documentation) is not an import.
_TOKENS = re.compile(
    r"#[^\n]*"
    r'|[rRbBuUfF]{0,2}(?:"""(?:\\.|[^\\])*?"""|' r"'''(?:\\.|[^\\])*?''')"
    r'|"(?:\\.|[^"\\\n])*"' r"|'(?:\\.|[^'\\\n])*'", re.S)


def _string_spans(text: str, end: int) -> list[tuple[int, int]]:
    """Spans of multi-line strings that start before ``end`` (where an import line can hide)."""
    spans = []
    for m in _TOKENS.finditer(text, 0, len(text)):
        s, e = m.span()
        if s >= end:
            break
        if text[s] != "#" and text.find("\n", s, e) >= 0:
            spans.append((s, e))
    return spans


def _maybe_in_string(text: str, starts: list[int]) -> bool:
    """Cheap test: does any position follow an odd number of triple quotes of one kind?"""
    return any(text.count('"""', 0, pos) % 2 or text.count("'''", 0, pos) % 2
               for pos in starts)


def _import_lines(text: str) -> list[int]:
    """Start offsets of lines that begin (after indentation) with ``import`` or ``from``.

    A substring search for "import" and a look back to the line start: several times faster
    than a multi-line regex that is tried at every character.
    """
    starts: list[int] = []
    pos = text.find("import")
    while pos >= 0:
        line = text.rfind("\n", 0, pos) + 1
        head = text[line:pos].lstrip(" \t")
        if (not head or head.startswith("from ") or head.startswith("from\t")) and \
                (not starts or starts[-1] != line):
            starts.append(line)
        nl = text.find("\n", pos)
        pos = text.find("import", nl) if nl >= 0 else -1
    return starts


def _statements(text: str) -> list[str]:
    matches = [m for m in (_STMT.match(text, p) for p in _import_lines(text)) if m]
    if not matches:
        return []
    # The exact tokenizing pass costs ~1 ms per 1000 lines: run it only when a statement may
    # sit inside a triple-quoted string.
    starts = [m.start() for m in matches]
    spans = _string_spans(text, starts[-1] + 1) if _maybe_in_string(text, starts) else []
    out: list[str] = []
    i = 0
    for m in matches:
        while i < len(spans) and spans[i][1] <= m.start():
            i += 1
        if i < len(spans) and spans[i][0] <= m.start():
            continue  # inside a docstring
        out.append(m.group(0).strip())
    return out


def _fingerprint(stmts: list[str], dynamic: list[str]) -> str:
    return "\n".join(stmts) + "\0" + ",".join(dynamic)


def fingerprint(text: str) -> str:
    return _fingerprint(_statements(text), _dynamic(text))


def _tolerant(stmt: str) -> list[ImportRef]:
    m = _TOLERANT_FROM.match(stmt)
    if m:
        names = [n.split()[0] for n in m.group(2).replace("\\", " ").split(",") if n.split()]
        names = [n for n in names if _IDENT.fullmatch(n)]
        return [ImportRef(m.group(1), tuple(names), "from")]
    m = _TOLERANT_IMPORT.match(stmt)
    if not m:
        return []
    refs = []
    for part in m.group(1).split(","):
        words = part.split()
        if words and re.fullmatch(r"[\w.]+", words[0]):
            refs.append(ImportRef(words[0], (), "import"))
    return refs


def _parse_ok(code: str) -> list[ImportRef]:
    refs: list[ImportRef] = []
    for node in ast.parse(code).body:
        if isinstance(node, ast.Import):
            refs += [ImportRef(a.name, (), "import") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            spec = "." * node.level + (node.module or "")
            refs.append(ImportRef(spec, tuple(a.name for a in node.names), "from"))
    return refs


def _parse(stmt: str) -> list[ImportRef]:
    try:
        return _parse_ok(stmt)
    except (SyntaxError, ValueError):
        return _tolerant(stmt)


def extract(text: str, path: str = "") -> Extracted:
    stmts = _statements(text)
    refs: list[ImportRef] = []
    try:  # one parse for all statements; per statement only when one of them is broken
        refs = _parse_ok("\n".join(stmts))
    except (SyntaxError, ValueError):
        for stmt in stmts:
            refs += _parse(stmt)
    dynamic = _dynamic(text)
    refs += [ImportRef(m, (), "import") for m in dynamic]
    return Extracted(tuple(dict.fromkeys(refs)), fingerprint=_fingerprint(stmts, dynamic))


# -- resolution --------------------------------------------------------------------------------
_PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _module_file(tree: FileTree, base: str, parts: list[str]) -> str | None:
    """The file defining module ``parts`` under directory ``base`` (module or package)."""
    stem = "/".join(parts)
    if base:
        stem = f"{base}/{stem}" if stem else base
    if not parts:
        return first_existing(tree, [f"{stem}/__init__.py" if stem else "__init__.py"])
    return first_existing(tree, [stem + ".py", stem + "/__init__.py", stem + ".pyi",
                                 stem + "/__init__.pyi"])


def _roots(tree: FileTree, importer: str) -> list[str]:
    """Directories absolute imports are tried from, most specific first (memoised while one
    file's imports are resolved: the probes are recorded by the first call)."""
    memo = tree.memo.get(("python-roots", importer))
    if memo is not None:
        return memo  # type: ignore[return-value]
    here = posixpath.dirname(importer)
    top = here
    while top and tree.exists(_join(top, "__init__.py")):  # climb out of the package
        top = posixpath.dirname(top)
    roots = [top, here, "", "src"]
    for name in _PROJECT_FILES:
        for proj in tree.named(name):
            d = posixpath.dirname(proj)
            roots += [d, _join(d, "src")]
    # Only existing directories: fewer probes to remember per file (memory on big trees).
    out = [r for r in dict.fromkeys(roots) if tree.isdir(r)]
    tree.memo[("python-roots", importer)] = out
    return out


def resolve(ref: ImportRef, importer: str, tree: FileTree) -> tuple[str, ...]:
    spec = ref.spec
    if spec.startswith("."):
        level = len(spec) - len(spec.lstrip("."))
        base = posixpath.dirname(importer)
        for _ in range(level - 1):
            if not base:
                return ()
            base = posixpath.dirname(base)
        bases = [base]
        parts = [p for p in spec[level:].split(".") if p]
    else:
        bases = _roots(tree, importer)
        parts = spec.split(".")
    for base in bases:
        target = _module_file(tree, base, parts)
        pkg_dir = _join(base, *parts)
        if target is None and not tree.isdir(pkg_dir):
            continue
        found: list[str] = []
        needs_module = ref.kind != "from" or not ref.names or "*" in ref.names
        for name in ref.names if ref.kind == "from" else ():
            sub = None if name == "*" else _module_file(tree, pkg_dir, [name])
            if sub is not None:
                found.append(sub)
            else:
                needs_module = True  # a name defined in the module itself
        if target is not None and target != importer and needs_module:
            found.insert(0, target)
        found = [f for f in found if f != importer]
        if found:
            return tuple(dict.fromkeys(found))
    return ()


LANGUAGE = Language("python", extract, resolve, fingerprint)
