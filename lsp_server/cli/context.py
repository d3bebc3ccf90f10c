"""`codefill context FILE [--line L --col C] [--budget N]`: the repository context of a cursor.

Prints the files a completion at that point would carry, in prompt order, with their import
distance, why each was chosen, whether it goes in whole or as an outline, and its token cost
(counted with the model's tokenizer); then what the assembled prompt actually holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..completion.completer import Completer, Cursor
from ..completion.session import ModelSession
from ..context import ContextSelection, WorkspaceIndex
from ..documents import read_source, split_at
from ..errors import CodefillError
from .common import add_model_options, config_from_args, progress

HELP = "show the repository context a completion at a cursor position would use"

# Nearest ancestor holding one of these is the workspace root (VCS roots first).
_VCS_MARKERS = (".git", ".hg", ".svn", ".jj")
_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "package.json", "go.mod", "Cargo.toml",
                    "pom.xml", "build.gradle", "build.gradle.kts", "CMakeLists.txt")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="source file (it is only read, never written)")
    p.add_argument("--line", type=int, default=None,
                   help="cursor line, 1-based (default: the end of the file)")
    p.add_argument("--col", type=int, default=None,
                   help="cursor column, 1-based (default: 1 with --line)")
    p.add_argument("--budget", type=int, default=None,
                   help="context tokens (default: the prompt's context share of the window)")
    p.add_argument("--root", default=None,
                   help="workspace root (default: the nearest enclosing repository or project)")
    p.add_argument("--json", action="store_true", help="print the selection as JSON")
    p.add_argument("--show-prompt", action="store_true",
                   help="also print the assembled prompt's text")
    add_model_options(p)


def find_root(path: Path) -> Path:
    """The nearest ancestor that is a VCS root, else a project root, else the file's directory."""
    parents = [path.parent, *path.parent.parents]
    for markers in (_VCS_MARKERS, _PROJECT_MARKERS):
        for d in parents:
            if any((d / m).exists() for m in markers):
                return d
    return path.parent


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    file = Path(args.file).absolute()
    text = read_source(file)
    if args.line is None:
        prefix, suffix = text, ""
    else:
        prefix, suffix = split_at(text, args.line, args.col or 1, name=args.file)
    root = Path(args.root).absolute() if args.root else find_root(file)
    if not root.is_dir():
        raise CodefillError(f"workspace root {root} is not a directory", "pass --root DIR")
    try:
        file.relative_to(root)
    except ValueError:
        raise CodefillError(f"{file} is not under the workspace root {root}",
                            "pass a --root that contains the file") from None
    config.context.watch = False
    index = WorkspaceIndex([root], config.context)
    t0 = time.perf_counter()
    index.build()
    t_index = time.perf_counter() - t0
    rel = file.relative_to(root).as_posix()
    with ModelSession(config, progress=progress if not args.json else None) as session:
        completer = Completer(session, context=index)
        budget = completer.budget()
        sel = completer.select_context(Cursor(prefix, suffix, rel, str(file)), budget,
                                       tokens=args.budget)
        assert sel is not None  # a context source and a file path were given
        prompt = session.build_prompt(prefix, suffix, path=rel, context=sel.files,
                                      budget=budget)
        rendered = session.engine.llama.detokenize(prompt.tokens, special=True).decode(
            "utf-8", errors="replace") if args.show_prompt else ""
    stats = index.stats()
    if args.json:
        out = {"root": str(root), "file": rel, "index": asdict(stats),
               "index_seconds": t_index, **_selection_json(sel),
               "prompt": {"tokens": len(prompt.tokens), "context_tokens": prompt.n_context,
                          "context_files": prompt.context_files}}
        if args.show_prompt:
            out["prompt"]["text"] = rendered
        print(json.dumps(out, indent=2))
        return 0
    _print_table(root, rel, stats.files, t_index, sel, prompt.context_files, prompt.n_context)
    if args.show_prompt:
        print("\n--- prompt " + "-" * 60)
        print(rendered)
    return 0


def _selection_json(sel: ContextSelection) -> dict:
    return {"status": sel.status, "budget": sel.budget, "used_tokens": sel.used_tokens,
            "elapsed_ms": sel.elapsed_ms, "unresolved": sel.unresolved,
            "files": [asdict(r) for r in sel.rows if not r.form.startswith("skipped")],
            "skipped": [asdict(r) for r in sel.rows if r.form.startswith("skipped")]}


def _print_table(root: Path, rel: str, n_files: int, t_index: float, sel: ContextSelection,
                 in_prompt: list[str], n_context: int) -> None:
    w = sys.stdout.write
    w(f"root     {root} ({n_files} files indexed in {t_index:.2f} s)\n")
    w(f"file     {rel}\n")
    w(f"context  {sel.used_tokens} of {sel.budget} tokens, {len(sel.files)} files, "
      f"selected in {sel.elapsed_ms:.1f} ms" + (f" ({sel.status})" if sel.status != "ok" else "")
      + "\n")
    if sel.rows:
        width = max(len(r.path) for r in sel.rows)
        w(f"\n  #  {'path':<{width}}  dist  {'form':<14} tokens  reason\n")
        n = 0
        for r in sel.rows:
            skipped = r.form.startswith("skipped")
            n += 0 if skipped else 1
            mark = "  -" if skipped else f"{n:3d}"
            used = f", uses {r.used_symbols} of its symbols" if r.used_symbols else ""
            w(f"{mark}  {r.path:<{width}}  {r.distance:4d}  {r.form:<14} {r.tokens:6d}  "
              f"{r.reason}{used}\n")
        w(f"  →  {rel}  (current file, last)\n")
    missing = [f.path for f in sel.files if f.path not in in_prompt]
    w(f"\nprompt   {n_context} context tokens; "
      + (f"{len(missing)} file(s) did not fit the prompt's context share: {', '.join(missing)}"
         if missing else "every selected file is in the prompt") + "\n")
    if sel.unresolved:
        w(f"external {', '.join(sel.unresolved)} (not in the workspace: third-party or "
          "standard library)\n")
