"""Unit-test lexical pairing: ``foo.py`` ↔ ``test_foo.py``, ``foo.ts`` ↔ ``foo.test.ts`` …

A table of test-name forms per language family; the partner is looked up by file name anywhere in
the tree (tests/ mirrors, __tests__/, src/test/java) and the candidate sharing the most leading
directories with the file wins, so ``pkg/a/foo.py`` pairs with ``tests/a/test_foo.py`` over
``tests/b/test_foo.py``.
"""

from __future__ import annotations

import posixpath

from .imports.base import closeness
from .tree import FileTree

# Extensions that are one family for pairing purposes (foo.ts may be tested by foo.test.tsx).
_FAMILIES: tuple[tuple[str, ...], ...] = (
    (".py",), (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts"), (".go",), (".rs",),
    (".java", ".kt"), (".c", ".cc", ".cpp", ".cxx"), (".rb",), (".swift",), (".cs",),
)
FAMILY_OF: dict[str, tuple[str, ...]] = {ext: fam for fam in _FAMILIES for ext in fam}

# Test-file name forms ("{}" = the implementation's stem), per family head extension.
TEST_FORMS: dict[str, tuple[str, ...]] = {
    ".py": ("test_{}", "{}_test"),
    ".ts": ("{}.test", "{}.spec"),
    ".go": ("{}_test",),
    ".rs": ("{}", "test_{}", "{}_test"),  # tests/foo.rs tests src/foo.rs
    ".java": ("{}Test", "{}Tests", "Test{}", "{}IT"),
    ".c": ("test_{}", "{}_test", "{}_unittest"),
    ".rb": ("{}_test", "test_{}", "{}_spec"),
    ".swift": ("{}Tests", "{}Test"),
    ".cs": ("{}Tests", "{}Test"),
}
_TEST_DIRS = frozenset({"test", "tests", "__tests__", "spec", "testing"})


def _split(path: str) -> tuple[str, str, tuple[str, ...]] | None:
    name = posixpath.basename(path)
    stem, ext = posixpath.splitext(name)
    fam = FAMILY_OF.get(ext.lower())
    if fam is None:
        return None
    return stem, ext, fam


def _in_test_dir(path: str) -> bool:
    return any(p in _TEST_DIRS for p in path.split("/")[:-1])


def _forms(fam: tuple[str, ...]) -> tuple[str, ...]:
    return TEST_FORMS.get(fam[0], ())


def test_stem(path: str) -> str | None:
    """The implementation stem a test file names, or None when ``path`` is not a test."""
    parts = _split(path)
    if parts is None:
        return None
    stem, _, fam = parts
    for form in _forms(fam):
        if form == "{}":
            continue
        pre, post = form.split("{}")
        if stem.startswith(pre) and stem.endswith(post) and len(stem) > len(pre) + len(post):
            return stem[len(pre):len(stem) - len(post)]
    if fam[0] == ".rs" and _in_test_dir(path):
        return stem
    return None


def _best(cands: list[str], path: str) -> str | None:
    cands = [c for c in dict.fromkeys(cands) if c != path]
    if not cands:
        return None
    # Mirror layouts: compare with test dirs taken out (tests/a/test_x.py ~ a/x.py).
    def strip(p: str) -> str:
        return "/".join(x for x in p.split("/") if x not in _TEST_DIRS and x != "src")
    return min(cands, key=lambda c: (-closeness(strip(c), strip(path)), -closeness(c, path),
                                     len(c), c))


def test_partner(path: str, tree: FileTree) -> str | None:
    """The test file of an implementation file, or the implementation of a test file."""
    parts = _split(path)
    if parts is None:
        return None
    stem, _, fam = parts
    impl_stem = test_stem(path)
    if impl_stem is not None:  # a test: find the implementation
        cands = [p for ext in fam for p in tree.named(impl_stem + ext) if not _is_test(p)]
        return _best(cands, path)
    cands = []
    for form in _forms(fam):
        for ext in fam:
            for p in tree.named(form.format(stem) + ext):
                if p != path and _is_test(p):
                    cands.append(p)
    return _best(cands, path)


def _is_test(path: str) -> bool:
    return test_stem(path) is not None
