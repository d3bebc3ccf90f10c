"""Outlines: what a file offers its importers, without the bodies.

An outline keeps imports, class/def/function signatures, fields and the first line of each
docstring; bodies become ``...``. It is a list of items (one per top-level declaration) so that
packing can put the symbols the current file uses first and cut the rest when the budget ends.
Python is outlined from its ``ast``; brace languages by a brace-depth scan that keeps the
members of containers (class, struct, impl, interface, namespace…) and elides function bodies.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from .imports.base import strip_c_comments


@dataclass(frozen=True)
class OutlineItem:
    text: str
    """Lines of the item, each ending with a newline."""
    names: frozenset[str] = frozenset()
    """Symbols the item declares."""
    header: bool = False
    """Imports/package lines: always first."""


def render(items: Iterable[OutlineItem], used: set[str] | frozenset[str] = frozenset()) -> str:
    return "".join(i.text for i in order_items(items, used))


def order_items(items: Iterable[OutlineItem], used: set[str] | frozenset[str] = frozenset()
                ) -> list[OutlineItem]:
    """Header first, then items declaring a used symbol, then the rest; stable otherwise."""
    return sorted(items, key=lambda i: (not i.header, not (i.names & used)))


# -- Python --------------------------------------------------------------------------------------
_MAX_ASSIGN_LINES = 3


def _docstring_line(node: ast.AST, indent: str) -> str:
    doc = ast.get_docstring(node, clean=True) if isinstance(
        node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) else None
    if not doc:
        return ""
    first = doc.strip().split("\n", 1)[0].replace('"""', "'''")
    return f'{indent}"""{first}"""\n'


def _span(lines: list[str], start: int, end: int) -> str:
    return "".join(line + "\n" for line in lines[start - 1:end])


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _py_def(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lines: list[str],
            depth: int) -> str:
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    body_start = node.body[0].lineno if node.body else node.lineno + 1
    end = max(node.lineno, body_start - 1)
    while end > node.lineno and lines[end - 1].strip()[:1] in ("#", ""):
        end -= 1  # comments between the signature and the body belong to the body
    head = _span(lines, start, end)
    if body_start == node.lineno:  # one-liner: `def f(): return 1`
        return head
    inner = _indent_of(lines[node.body[0].lineno - 1]) or _indent_of(lines[node.lineno - 1]) + "    "
    out = head + _docstring_line(node, inner)
    if isinstance(node, ast.ClassDef) and depth < 2:
        members = [_py_member(n, lines, depth + 1) for n in node.body]
        members = [m for m in members if m]
        out += "".join(members) if members else f"{inner}...\n"
    else:
        out += f"{inner}...\n"
    return out


def _py_assign(node: ast.stmt, lines: list[str]) -> str:
    end = node.end_lineno or node.lineno
    if end - node.lineno + 1 <= _MAX_ASSIGN_LINES:
        return _span(lines, node.lineno, end)
    first = lines[node.lineno - 1]
    return first.split("=", 1)[0].rstrip() + " = ...\n" if "=" in first else first + "\n"


def _py_member(node: ast.stmt, lines: list[str], depth: int) -> str:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return _py_def(node, lines, depth)
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.TypeAlias) if hasattr(ast, "TypeAlias")
                  else (ast.Assign, ast.AnnAssign)):
        return _py_assign(node, lines)
    return ""


def _targets(node: ast.stmt) -> frozenset[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return frozenset({node.name})
    names: set[str] = set()
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    for t in targets:
        for sub in ast.walk(t) if t is not None else ():
            if isinstance(sub, ast.Name):
                names.add(sub.id)
    return frozenset(names)


def outline_python(text: str) -> list[OutlineItem]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return outline_indented(text)
    lines = text.splitlines()
    header = _docstring_line(tree, "")
    items: list[OutlineItem] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            header += _span(lines, node.lineno, node.end_lineno or node.lineno)
            continue
        text_ = _py_member(node, lines, 0)
        if text_:
            items.append(OutlineItem(text_, _targets(node)))
    return ([OutlineItem(header, header=True)] if header else []) + items


_PY_DECL = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+(\w+)")
_PY_IMPORT = re.compile(r"^(?:from\s+\S+\s+import|import)\s")


def outline_indented(text: str) -> list[OutlineItem]:
    """Tolerant Python outline for files ``ast`` rejects: import, def and class lines."""
    header, items = "", []
    for line in text.splitlines():
        if _PY_IMPORT.match(line):
            header += line + "\n"
            continue
        m = _PY_DECL.match(line)
        if m:
            if m.group(1) == "" or not items:
                items.append(OutlineItem(line + "\n", frozenset({m.group(2)})))
            else:
                last = items[-1]
                items[-1] = OutlineItem(last.text + line + "\n", last.names)
    return ([OutlineItem(header, header=True)] if header else []) + items


# -- brace languages -----------------------------------------------------------------------------
_CONTAINER = re.compile(
    r"\b(?:class|interface|struct|enum|trait|impl|namespace|module|object|union|record|mod|"
    r"extern|protocol|extension|import|export\s*\{|type\s+\w+[^=]*=\s*\{|type\s+\w+\s+"
    r"(?:struct|interface))\b|^\s*(?:const|var|type)\s*\($|^\s*(?:public|private|protected)\s*:")
_HEADER = re.compile(r"^\s*(?:import\b|package\b|#\s*include\b|use\b|using\b|extern\s+crate\b|"
                     r"(?:const|let|var)\s+[\w{}\s,]+=\s*require\()")
_DECL_NAME = re.compile(
    r"\b(?:class|interface|struct|enum|trait|type|fn|func|function|def|const|let|var|val|object|"
    r"impl|mod|namespace|record|union|define)\s+(?:\([^)]*\)\s*)?(?:<[^>]*>\s*)?(?:for\s+)?([A-Za-z_$][\w$]*)")
_CALL_NAME = re.compile(r"([A-Za-z_$][\w$]*)\s*(?:<[^>]*>)?\s*\(")
_STRING_BODY = re.compile(r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`")
_KEYWORDS = frozenset({"if", "for", "while", "switch", "return", "catch", "sizeof", "new",
                       "function", "fn", "func", "super", "this"})


def _blank_strings(code: str) -> str:
    return _STRING_BODY.sub(lambda m: m.group(0)[0] + re.sub(r"[^\n]", " ", m.group(0)[1:-1])
                            + m.group(0)[-1], code)


def _names_of(line: str) -> frozenset[str]:
    names = set(_DECL_NAME.findall(line))
    if not names:
        call = _CALL_NAME.search(line)
        if call and call.group(1) not in _KEYWORDS:
            names.add(call.group(1))
    return frozenset(names)


def outline_braces(text: str) -> list[OutlineItem]:
    raw = text.splitlines()
    code = _blank_strings(strip_c_comments(text)).splitlines()
    stack: list[bool] = []  # per open brace: does it open a container (members are kept)?
    header = ""
    items: list[tuple[list[str], frozenset[str]]] = []
    prev_code = ""
    pending: list[str] = []  # comments above a declaration travel with it
    header_parens = 0  # inside a multi-line `import ( ... )` block
    parens = 0  # open parentheses: a signature continues on the next line
    for line, cl in zip(raw, code + [""] * (len(raw) - len(code))):
        visible = all(stack)
        at_top = not stack
        head = cl if cl.strip() not in ("{", "") else prev_code
        opens = cl.count("{")
        closes = cl.count("}")
        if visible:
            if at_top and (header_parens or _HEADER.match(cl)):
                header += line + "\n"
                header_parens = max(0, header_parens + cl.count("(") - cl.count(")"))
            elif not cl.strip():
                if line.strip() and at_top:
                    pending.append(line + "\n")
                elif line.strip() and items:
                    items[-1][0].append(line + "\n")
            else:
                kept = line
                if opens - closes > 0 and not _CONTAINER.search(head):
                    kept = line.rstrip() + " ... }"  # a body: keep the signature only
                starts_item = at_top and parens == 0 and cl.strip()[:1] not in ("{", "}")
                if starts_item or not items:
                    items.append((pending + [kept + "\n"], _names_of(cl)))
                else:
                    items[-1][0].extend(pending + [kept + "\n"])
                pending = []
        parens = max(0, parens + cl.count("(") - cl.count(")"))
        # Update the block stack after deciding visibility of this line.
        for ch in cl:
            if ch == "{":
                stack.append(all(stack) and bool(_CONTAINER.search(head)))
            elif ch == "}" and stack:
                stack.pop()
        if cl.strip():
            prev_code = cl
    out = [OutlineItem(header, header=True)] if header else []
    return out + [OutlineItem("".join(ls), names) for ls, names in items if "".join(ls).strip()]


OUTLINERS: dict[str, Callable[[str], list[OutlineItem]]] = {
    "python": outline_python,
    "javascript": outline_braces,
    "go": outline_braces,
    "rust": outline_braces,
    "jvm": outline_braces,
    "c": outline_braces,
}


def outline(language: str | None, text: str) -> list[OutlineItem]:
    """Outline items of ``text`` (unknown languages: the brace scan, a safe generic)."""
    return OUTLINERS.get(language or "", outline_braces)(text)
