"""Java and Kotlin: ``package`` + ``import`` → the file declaring that class.

Each file declares ``jvm:<package>.<FileStem>`` (and its package), so imports resolve through the
tree's symbol table wherever the source roots are (src/main/java, app/src/…). Classes of the same
package need no import: capitalised names the file uses that match a sibling class count too.
"""

from __future__ import annotations

import posixpath
import re

from ..tree import FileTree
from .base import Extracted, ImportRef, Language, strip_c_comments

_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)", re.M)
_IMPORT = re.compile(r"^\s*import\s+(static\s+)?([\w.]+?)(\.\*)?(?:\s+as\s+\w+)?\s*;?\s*$", re.M)
_CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z0-9_]*\b")
_STRINGS = re.compile(r"\"(?:\\.|[^\"\\\n])*\"")
_MAX_SAME_PACKAGE = 256
_MAX_WILDCARD = 32


def _scan(text: str) -> tuple[str, list[ImportRef]]:
    code = strip_c_comments(text)
    m = _PACKAGE.search(code)
    pkg = m.group(1) if m else ""
    refs = [ImportRef(name + (".*" if star else ""), (name.rsplit(".", 1)[-1],),
                      "static" if static else "import")
            for static, name, star in _IMPORT.findall(code)]
    return pkg, refs


def extract(text: str, path: str = "") -> Extracted:
    pkg, refs = _scan(text)
    stem = posixpath.splitext(posixpath.basename(path))[0]
    qual = f"{pkg}.{stem}" if pkg else stem
    body = _STRINGS.sub('""', strip_c_comments(text))
    names = sorted(set(_CLASS_NAME.findall(body)) - {stem})[:_MAX_SAME_PACKAGE]
    refs.append(ImportRef(pkg, tuple(names), "samepkg"))
    return Extracted(tuple(dict.fromkeys(refs)), (f"jvm:{qual}", f"jvmpkg:{pkg}"))


def fingerprint(text: str) -> str:
    # Same-package references change with the body; the body's class names count.
    pkg, refs = _scan(text)
    names = sorted(set(_CLASS_NAME.findall(_STRINGS.sub('""', strip_c_comments(text)))))
    return pkg + "\n" + "\n".join(f"{r.kind}:{r.spec}" for r in refs) + "\n" + ",".join(names)


def resolve(ref: ImportRef, importer: str, tree: FileTree) -> tuple[str, ...]:
    if ref.kind == "samepkg":
        found = []
        for name in ref.names:
            qual = f"{ref.spec}.{name}" if ref.spec else name
            found += [p for p in tree.declared(f"jvm:{qual}") if p != importer]
        return tuple(dict.fromkeys(found))
    if ref.spec.endswith(".*"):
        pkg = ref.spec[:-2]
        files = [p for p in tree.declared(f"jvmpkg:{pkg}") if p != importer]
        if files:
            return tuple(files[:_MAX_WILDCARD])
        # import static a.b.C.* : members of class C
    parts = ref.spec.removesuffix(".*").split(".")
    # Longest prefix naming a class: a.b.C, a.b.C.Inner, static a.b.C.member.
    for n in range(len(parts), 1, -1):
        files = [p for p in tree.declared("jvm:" + ".".join(parts[:n])) if p != importer]
        if files:
            return tuple(files)
    return ()


LANGUAGE = Language("jvm", extract, resolve, fingerprint)
