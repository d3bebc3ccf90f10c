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
_TOLERANT_FROM = re.compile(r"from\s+([.\w]+)\s+import\s*\(?([^)]*)")
_TOLERANT_IMPORT = re.compile(r"import\s+(.+)")
_IDENT = re.compile(r"[A-Za-z_]\w*|\*")


def _statements(text: str) -> list[str]:
    return [m.group(0).strip() for m in _STMT.finditer(text)]


def fingerprint(text: str) -> str:
    return "\n".join(_statements(text)) + "\0" + ",".join(_DYNAMIC.findall(text))


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


def _parse(stmt: str) -> list[ImportRef]:
    try:
        tree = ast.parse(stmt)
    except (SyntaxError, ValueError):
        return _tolerant(stmt)
    refs: list[ImportRef] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            refs += [ImportRef(a.name, (), "import") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            spec = "." * node.level + (node.module or "")
            refs.append(ImportRef(spec, tuple(a.name for a in node.names), "from"))
    return refs


def extract(text: str, path: str = "") -> Extracted:
    refs: list[ImportRef] = []
    for stmt in _statements(text):
        refs += _parse(stmt)
    refs += [ImportRef(m, (), "import") for m in _DYNAMIC.findall(text)]
    return Extracted(tuple(dict.fromkeys(refs)))


# -- resolution --------------------------------------------------------------------------------
_PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _module_file(tree: FileTree, base: str, parts: list[str]) -> str | None:
    """The file defining module ``parts`` under directory ``base`` (module or package)."""
    stem = _join(base, *parts)
    if not parts:
        return first_existing(tree, [_join(stem, "__init__.py")])
    return first_existing(tree, [stem + ".py", _join(stem, "__init__.py"), stem + ".pyi",
                                 _join(stem, "__init__.pyi")])


def _roots(tree: FileTree, importer: str) -> list[str]:
    """Directories absolute imports are tried from, most specific first."""
    here = posixpath.dirname(importer)
    top = here
    while top and tree.exists(_join(top, "__init__.py")):  # climb out of the package
        top = posixpath.dirname(top)
    roots = [top, here, "", "src"]
    for name in _PROJECT_FILES:
        for proj in tree.named(name):
            d = posixpath.dirname(proj)
            roots += [d, _join(d, "src")]
    return list(dict.fromkeys(roots))


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


LANGUAGE = Language("python", (".py", ".pyi"), extract, resolve, fingerprint)
