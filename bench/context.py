"""Repository-context benchmark: index build, per-request selection, incremental updates.

    .venv/bin/python bench/context.py [--files 20000] [--requests 200] [--seed 0]

Trees: (a) the Python standard library source of this interpreter, (b) a generated tree of
--files files (Python packages, TypeScript and Go modules importing each other). Per tree:
- build: wall time of a full index build (scan, read, parse imports, resolve), and the peak RSS
  it adds, each measured in a fresh subprocess so trees do not share memory;
- select: per-request context selection with the embedded model's tokenizer and the default
  budget, from a warm index: "first" (first request for a file: outlines and token counts
  computed), "recompute" (same file after an unrelated graph change: counts memoised), and
  "keystroke" (the next keystroke, nothing changed: the cached selection);
- update: RootIndex.refresh of one changed file (what a watchdog batch runs, debounce excluded),
  for a content-only edit and for an edit that adds an import.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsp_server.config import Config, ContextConfig  # noqa: E402
from lsp_server.completion.completer import Completer  # noqa: E402
from lsp_server.context import WorkspaceIndex  # noqa: E402
from lsp_server.context.imports import resolver_for  # noqa: E402


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def generate_tree(root: Path, n: int, seed: int) -> None:
    """n files: 60 % Python packages, 25 % TypeScript, 15 % Go, 50 files a directory."""
    rng = random.Random(seed)
    n_py, n_ts = int(n * 0.6), int(n * 0.25)
    n_go = n - n_py - n_ts
    (root / "go.mod").parent.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text("module example.com/gen\n\ngo 1.22\n")
    py = [f"pkg{i // 50}/m{i}" for i in range(n_py)]
    ts = [f"web/src/d{i // 50}/c{i}" for i in range(n_ts)]
    go = [f"svc/p{i // 25}" for i in range(n_go)]
    body_py = "".join(f"def f{j}(x: int) -> int:\n    '''Step {j}.'''\n    return x + {j}\n\n"
                      for j in range(8))
    for i, mod in enumerate(py):
        deps = rng.sample(range(n_py), 4)
        imports = "".join(f"from {py[d].replace('/', '.')} import f{d % 8}\n" for d in deps)
        p = root / f"{mod}.py"
        p.parent.mkdir(parents=True, exist_ok=True)
        if not (p.parent / "__init__.py").exists():
            (p.parent / "__init__.py").write_text("")
        p.write_text(f'"""Generated module {i}."""\n{imports}import os\n\n\n'
                     f"class C{i}:\n    value = {i}\n\n" + body_py)
    for i, mod in enumerate(ts):
        deps = rng.sample(range(n_ts), 3)
        here = Path(mod).parent
        imports = "".join(
            f"import {{ c{d} }} from '{os.path.relpath(ts[d], here)}';\n".replace("'c", "'./c")
            for d in deps)
        p = root / f"{mod}.ts"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(imports + "import React from 'react';\n\n"
                     f"export function c{i}(x: number): number {{\n  return x * {i};\n}}\n"
                     f"export class K{i} {{\n  v = {i};\n  get(): number {{ return this.v; }}\n}}\n")
    for i, pkg in enumerate(go):
        deps = rng.sample(range(n_go), 2)
        imports = "".join(f'\t"example.com/gen/{go[d]}"\n' for d in deps)
        p = root / pkg / f"f{i}.go"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"package {Path(pkg).name}\n\nimport (\n\t\"fmt\"\n{imports})\n\n"
                     f"func F{i}(x int) int {{\n\tfmt.Println(x)\n\treturn x + {i}\n}}\n")


def build_once(root: str) -> dict:
    """Run in a subprocess: one index build, its time and the RSS it adds."""
    base = rss_kb()
    idx = WorkspaceIndex([root], ContextConfig(watch=False))
    t0 = time.perf_counter()
    idx.build()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = idx.stats()
    return {"seconds": dt, "rss_base_mb": base / 1024, "rss_peak_mb": peak / 1024,
            "files": s.files, "source_files": s.source_files, "edges": s.edges}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_requests(root: Path, n: int, seed: int, session) -> dict:  # noqa: ANN001
    idx = WorkspaceIndex([root], ContextConfig(watch=False))
    idx.build()
    tok = session.tokenizer
    budget = session.context_allowance(Completer(session).budget())
    r = idx.roots[0]
    sources = sorted(p for p in r.graph.nodes if r.graph.deps(p))
    rng = random.Random(seed)
    picks = rng.sample(sources, min(n, len(sources)))
    first, recompute, keystroke, n_files, used = [], [], [], [], []
    for rel in picks:
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        cut = len(text) // 2
        sel = idx.select_context(root / rel, text[:cut], text[cut:], tok, budget)
        first.append(sel.elapsed_ms)
        n_files.append(len(sel.files))
        used.append(sel.used_tokens)
        sel = idx.select_context(root / rel, text[:cut + 1], text[cut + 1:], tok, budget)
        assert sel.cached
        keystroke.append(sel.elapsed_ms)
        with idx._lock:  # an unrelated graph change: recomputed, outlines and counts memoised
            r.graph.generation += 1
        sel = idx.select_context(root / rel, text[:cut + 2], text[cut + 2:], tok, budget)
        assert not sel.cached
        recompute.append(sel.elapsed_ms)
    # Incremental updates through refresh (the watchdog batch path).
    edit, add_import = [], []
    for rel in picks[:50]:
        path = root / rel
        original = path.read_text(encoding="utf-8", errors="replace")
        path.write_text(original + "\n# edited\n")
        t0 = time.perf_counter()
        with idx._lock:
            r.refresh(rel)
        edit.append((time.perf_counter() - t0) * 1000)
        lang = resolver_for(rel)
        line = {"python": "import os.path\nimport pkg0.m1\n",
                "javascript": "import { c1 } from '../d0/c1';\n",
                "go": ""}.get(lang.name if lang else "", "")
        path.write_text(line + original if not rel.endswith(".go")
                        else original.replace("import (\n", 'import (\n\t"example.com/gen/svc/p0"\n', 1))
        t0 = time.perf_counter()
        with idx._lock:
            r.refresh(rel)
        add_import.append((time.perf_counter() - t0) * 1000)
        path.write_text(original)
        with idx._lock:
            r.refresh(rel)
    return {
        "budget": budget, "requests": len(picks),
        "files_per_prompt_p50": statistics.median(n_files),
        "tokens_p50": statistics.median(used),
        "first_p50": statistics.median(first), "first_p95": pct(first, 0.95),
        "recompute_p50": statistics.median(recompute), "recompute_p95": pct(recompute, 0.95),
        "keystroke_p50": statistics.median(keystroke), "keystroke_p95": pct(keystroke, 0.95),
        "edit_p50": statistics.median(edit), "edit_p95": pct(edit, 0.95),
        "import_p50": statistics.median(add_import), "import_p95": pct(add_import, 0.95),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build-only", metavar="ROOT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_only:
        print(json.dumps(build_once(args.build_only)))
        return
    from lsp_server.completion.session import ModelSession

    tmp = Path(tempfile.mkdtemp(prefix="codefill-bench-"))
    try:
        stdlib = tmp / "stdlib"  # a copy: site-packages excluded, symlinks kept inside
        shutil.copytree(sysconfig.get_paths()["stdlib"], stdlib, symlinks=True,
                        ignore=shutil.ignore_patterns("site-packages", "__pycache__"))
        gen = tmp / "generated"
        t0 = time.perf_counter()
        generate_tree(gen, args.files, args.seed)
        print(f"generated {args.files} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        trees = {"Python stdlib": stdlib, f"generated {args.files // 1000}k": gen}
        builds = {}
        for name, root in trees.items():
            out = subprocess.run([sys.executable, __file__, "--build-only", str(root)],
                                 capture_output=True, text=True, check=True).stdout
            builds[name] = json.loads(out)
            print(f"{name}: {builds[name]}", file=sys.stderr)
        config = Config()
        with ModelSession(config) as session:
            session.engine.wait_ready()
            reqs = {name: bench_requests(root, args.requests, args.seed, session)
                    for name, root in trees.items()}
        print("| tree | files (source) | import edges | build | peak RSS added | "
              "select first p50/p95 | recompute p50/p95 | keystroke p50/p95 | "
              "refresh edit p50 | refresh +import p50 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in trees:
            b, q = builds[name], reqs[name]
            print(f"| {name} | {b['files']} ({b['source_files']}) | {b['edges']} | "
                  f"{b['seconds']:.2f} s | {b['rss_peak_mb'] - b['rss_base_mb']:.0f} MB | "
                  f"{q['first_p50']:.1f} / {q['first_p95']:.1f} ms | "
                  f"{q['recompute_p50']:.1f} / {q['recompute_p95']:.1f} ms | "
                  f"{q['keystroke_p50']:.2f} / {q['keystroke_p95']:.2f} ms | "
                  f"{q['edit_p50']:.2f} ms | {q['import_p50']:.2f} ms |")
        print()
        for name in trees:
            q = reqs[name]
            print(f"{name}: {q['requests']} requests, budget {q['budget']} tokens, "
                  f"median {q['files_per_prompt_p50']:.0f} files / {q['tokens_p50']:.0f} tokens "
                  f"per prompt; refresh p95 edit {q['edit_p95']:.2f} ms, +import "
                  f"{q['import_p95']:.2f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
