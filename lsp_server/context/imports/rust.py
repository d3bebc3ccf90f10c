"""Rust modules: ``mod x;`` declarations and ``use crate::/self::/super::`` paths.

A module's children live in the directory named after it (``a.rs`` → ``a/``), or beside
``mod.rs``/``lib.rs``/``main.rs``; the crate root is ``src/`` next to the nearest Cargo.toml.
"""

from __future__ import annotations

import posixpath
import re

from ..tree import FileTree
from .base import Extracted, ImportRef, Language, first_existing, nearest_upward, strip_c_comments

_MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
_USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M)
_ROOT_FILES = ("mod.rs", "lib.rs", "main.rs")


def expand_use(tree_text: str) -> list[str]:
    """``a::{b, c::{d, e as f}}`` → ["a::b", "a::c::d", "a::c::e"]."""
    s = re.sub(r"\s+as\s+\w+", "", tree_text)
    s = re.sub(r"\s+", "", s)
    out: list[str] = []

    def walk(prefix: str, body: str) -> None:
        i = body.find("{")
        if i < 0:
            path = prefix + body
            if path and not path.endswith("::"):
                out.append(path)
            return
        head, inner = body[:i], body[i + 1:body.rfind("}")]
        depth, start = 0, 0
        for j, ch in enumerate(inner + ","):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                part = inner[start:j]
                if part == "self":
                    out.append((prefix + head).rstrip(":"))
                elif part:
                    walk(prefix + head, part)
                start = j + 1

    walk("", s)
    return out


def _scan(text: str) -> list[ImportRef]:
    code = strip_c_comments(text)
    refs = [ImportRef(m, (), "mod") for m in _MOD.findall(code)]
    for body in _USE.findall(code):
        for path in expand_use(body):
            refs.append(ImportRef(path, (path.rsplit("::", 1)[-1],), "use"))
    return refs


def extract(text: str, path: str = "") -> Extracted:
    return Extracted(tuple(dict.fromkeys(_scan(text))))


def fingerprint(text: str) -> str:
    return "\n".join(f"{r.kind}:{r.spec}" for r in _scan(text))


def children_dir(path: str) -> str:
    d, name = posixpath.split(path)
    if name in _ROOT_FILES:
        return d
    return posixpath.join(d, name[:-3]) if d else name[:-3]


def _module_file(tree: FileTree, d: str, name: str) -> str | None:
    base = f"{d}/{name}" if d else name
    return first_existing(tree, [base + ".rs", base + "/mod.rs"])


def _dir_module_file(tree: FileTree, d: str) -> str | None:
    """The file of the module whose children live in ``d``."""
    cands = [f"{d}/{n}" if d else n for n in _ROOT_FILES]
    if d:
        cands.insert(1, d + ".rs")
    return first_existing(tree, cands)


def _crate_src(tree: FileTree, importer: str) -> str | None:
    cargo = nearest_upward(tree, posixpath.dirname(importer), ("Cargo.toml",))
    if cargo is not None:
        d = posixpath.dirname(cargo)
        return f"{d}/src" if d else "src"
    d = posixpath.dirname(importer)  # no Cargo.toml: the nearest dir holding lib.rs/main.rs
    while True:
        if first_existing(tree, [f"{d}/lib.rs" if d else "lib.rs", f"{d}/main.rs" if d else "main.rs"]):
            return d
        if not d:
            return None
        d = posixpath.dirname(d)


def resolve(ref: ImportRef, importer: str, tree: FileTree) -> tuple[str, ...]:
    if ref.kind == "mod":
        hit = _module_file(tree, children_dir(importer), ref.spec)
        return (hit,) if hit else ()
    segs = ref.spec.split("::")
    if segs and segs[0] == "":
        segs = segs[1:]
    if not segs:
        return ()
    head = segs[0]
    if head == "crate":
        d = _crate_src(tree, importer)
        segs = segs[1:]
    elif head in ("self", "super"):
        d = children_dir(importer)
        while segs and segs[0] in ("self", "super"):
            if segs[0] == "super":
                d = posixpath.dirname(d)
            segs = segs[1:]
    else:  # 2018 paths: a child module of the current one, or an external crate
        d = children_dir(importer)
    if d is None:
        return ()
    start_dir, target = d, None
    for seg in segs:
        hit = _module_file(tree, d, seg)
        if hit is None:
            break
        target, d = hit, f"{d}/{seg}" if d else seg
    if target is None and head in ("crate", "self", "super"):
        target = _dir_module_file(tree, start_dir)  # an item of that module's own file
    return (target,) if target and target != importer else ()


LANGUAGE = Language("rust", extract, resolve, fingerprint)
