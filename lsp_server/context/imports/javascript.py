"""JavaScript/TypeScript imports: ES modules, re-exports, require() and import().

Relative specifiers resolve against the importing file with TypeScript's extension and
``index`` rules (including ``./x.js`` naming ``x.ts``); bare specifiers go through the nearest
``tsconfig.json``/``jsconfig.json`` ``paths`` and ``baseUrl`` (following ``extends``), and are
otherwise packages, left unresolved.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass

from ..tree import FileTree
from .base import Extracted, ImportRef, Language, first_existing, join_norm, strip_c_comments

EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".vue",
              ".svelte")
_JS_TO_TS = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}

_IMPORT = re.compile(r"\bimport\s+(?:type\s+)?(?:([\w$*{}\s,]+?)\s+from\s+)?(['\"])([^'\"\n]+)\2")
_EXPORT_FROM = re.compile(r"\bexport\s+(?:type\s+)?(\*(?:\s+as\s+[\w$]+)?|\{[^}]*\})\s*from\s+"
                          r"(['\"])([^'\"\n]+)\2")
_CALL = re.compile(r"\b(?:require|import)\s*\(\s*(['\"])([^'\"\n]+)\1\s*\)")
_NAME = re.compile(r"[\w$]+")


def _names(clause: str | None) -> tuple[str, ...]:
    if not clause:
        return ()
    out: list[str] = []
    for part in re.split(r"[{},]", clause):
        words = part.split()
        if not words:
            continue
        if words[0] == "*":
            out.append(words[-1])  # * as ns
        elif words[0] != "type" or len(words) == 1:
            out.append(words[0])
        else:
            out.append(words[1])
    return tuple(n for n in out if _NAME.fullmatch(n))


def _scan(text: str) -> list[ImportRef]:
    code = strip_c_comments(text)
    refs = [ImportRef(m.group(3), _names(m.group(1)), "import") for m in _IMPORT.finditer(code)]
    refs += [ImportRef(m.group(3), _names(m.group(1)), "export") for m in _EXPORT_FROM.finditer(code)]
    refs += [ImportRef(m.group(2), (), "require") for m in _CALL.finditer(code)]
    return refs


def extract(text: str, path: str = "") -> Extracted:
    return Extracted(tuple(dict.fromkeys(_scan(text))))


def fingerprint(text: str) -> str:
    return "\n".join(f"{r.kind}:{r.spec}:{','.join(r.names)}" for r in _scan(text))


# -- resolution --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PathMap:
    base_url: str | None
    """Root-relative baseUrl, if the config sets one."""
    paths: tuple[tuple[str, tuple[str, ...]], ...]
    """(pattern, root-relative substitutions), longest pattern prefix first."""


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_CONFIG_NAMES = ("tsconfig.json", "jsconfig.json")


def _load_json(text: str) -> object:
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", strip_c_comments(text)))
    except ValueError:
        return None


def _compiler_options(tree: FileTree, config: str, depth: int = 0) -> tuple[dict, str]:
    """compilerOptions merged along ``extends``, and the dir each path option is relative to."""
    data = tree.parsed(config, _load_json)
    if not isinstance(data, dict):
        return {}, posixpath.dirname(config)
    here = posixpath.dirname(config)
    merged: dict = {}
    origin = here
    ext = data.get("extends")
    if isinstance(ext, str) and ext.startswith(".") and depth < 5:
        parent = join_norm(here, ext if ext.endswith(".json") else ext + ".json")
        if parent is not None:
            merged, origin = _compiler_options(tree, parent, depth + 1)
    opts = data.get("compilerOptions")
    if isinstance(opts, dict):
        if "baseUrl" in opts or "paths" in opts:
            origin = here
        merged = {**merged, **opts}
    return merged, origin


def _path_map(tree: FileTree, importer: str) -> PathMap | None:
    d = posixpath.dirname(importer)
    while True:
        for name in _CONFIG_NAMES:
            cfg = f"{d}/{name}" if d else name
            if tree.exists(cfg):
                opts, origin = _compiler_options(tree, cfg)
                base = opts.get("baseUrl")
                base_dir = join_norm(origin, base) if isinstance(base, str) else None
                rel_to = base_dir if base_dir is not None else origin
                paths = []
                raw = opts.get("paths")
                for pattern, subs in (raw.items() if isinstance(raw, dict) else ()):
                    if isinstance(subs, list):
                        targets = tuple(t for t in (join_norm(rel_to, s) for s in subs
                                                    if isinstance(s, str)) if t is not None)
                        paths.append((pattern, targets))
                paths.sort(key=lambda p: -len(p[0].split("*")[0]))
                return PathMap(base_dir, tuple(paths))
        if not d:
            return None
        d = posixpath.dirname(d)


def _expand(tree: FileTree, base: str) -> str | None:
    """TypeScript's candidates for a module path: as is, with extensions, then index files."""
    stem, ext = posixpath.splitext(base)
    cands = []
    if ext in EXTENSIONS or ext == ".json":
        cands.append(base)
    cands += [stem + alt for alt in _JS_TO_TS.get(ext, ())]
    cands += [base + e for e in EXTENSIONS]
    cands += [f"{base}/index{e}" for e in EXTENSIONS]
    return first_existing(tree, [c.lstrip("/") for c in cands])


def _match(pattern: str, spec: str) -> str | None:
    if "*" not in pattern:
        return "" if pattern == spec else None
    pre, _, post = pattern.partition("*")
    if spec.startswith(pre) and spec.endswith(post) and len(spec) >= len(pre) + len(post):
        return spec[len(pre):len(spec) - len(post)]
    return None


def resolve(ref: ImportRef, importer: str, tree: FileTree) -> tuple[str, ...]:
    spec = ref.spec.split("?", 1)[0]
    if spec.startswith("./") or spec.startswith("../") or spec in (".", ".."):
        base = join_norm(posixpath.dirname(importer), spec)
        hit = _expand(tree, base) if base is not None else None
        return (hit,) if hit and hit != importer else ()
    pm = _path_map(tree, importer)
    if pm is None:
        return ()
    for pattern, subs in pm.paths:
        star = _match(pattern, spec)
        if star is None:
            continue
        for sub in subs:
            hit = _expand(tree, sub.replace("*", star))
            if hit:
                return (hit,)
    if pm.base_url is not None:
        hit = _expand(tree, join_norm(pm.base_url, spec) or spec)
        if hit:
            return (hit,)
    return ()


LANGUAGE = Language("javascript", extract, resolve, fingerprint)
