"""Go imports: import paths under a ``go.mod`` module path name package directories."""

from __future__ import annotations

import posixpath
import re

from ..tree import FileTree
from .base import Extracted, ImportRef, Language, strip_c_comments

_BLOCK = re.compile(r"^\s*import\s*\(([^)]*)\)", re.M)
_SINGLE = re.compile(r"^\s*import\s+(?:[\w.]+\s+)?\"([^\"]+)\"", re.M)
_IN_BLOCK = re.compile(r"\"([^\"]+)\"")
_MODULE = re.compile(r"^\s*module\s+\"?([^\s\"]+)\"?", re.M)


def _scan(text: str) -> list[str]:
    code = strip_c_comments(text)
    specs: list[str] = []
    for m in _BLOCK.finditer(code):
        specs += _IN_BLOCK.findall(m.group(1))
    specs += _SINGLE.findall(code)
    return list(dict.fromkeys(specs))


def extract(text: str, path: str = "") -> Extracted:
    return Extracted(tuple(ImportRef(s, (s.rsplit("/", 1)[-1],), "import") for s in _scan(text)))


def fingerprint(text: str) -> str:
    return "\n".join(_scan(text))


def _module_path(text: str) -> str | None:
    m = _MODULE.search(text)
    return m.group(1) if m else None


def resolve(ref: ImportRef, importer: str, tree: FileTree) -> tuple[str, ...]:
    best: tuple[int, str] | None = None
    for gomod in tree.named("go.mod"):
        mod = tree.parsed(gomod, _module_path)
        if not isinstance(mod, str):
            continue
        if ref.spec == mod or ref.spec.startswith(mod + "/"):
            if best is None or len(mod) > best[0]:
                rest = ref.spec[len(mod) + 1:]
                d = posixpath.dirname(gomod)
                best = (len(mod), "/".join(p for p in (d, rest) if p))
    if best is None:
        return ()
    pkg_dir = best[1]
    files = [f"{pkg_dir}/{n}" if pkg_dir else n for n in tree.listdir(pkg_dir)
             if n.endswith(".go") and not n.endswith("_test.go")]
    return tuple(f for f in files if f != importer)


LANGUAGE = Language("go", extract, resolve, fingerprint)
