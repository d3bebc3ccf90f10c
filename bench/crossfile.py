"""Cross-file completion: exact match and edit similarity with and without repository context.

    .venv/bin/python bench/crossfile.py [--packages pathspec,watchdog,...] [--tasks 60]
                                        [--model PATH] [--seed 0] [--out results.json]

Tasks come from real installed packages (each copied to a temporary workspace): a line that uses
a name imported from another module of the same package (``from .x import Name`` / ``from pkg.x
import Name``) in a call or attribute access (``Name(`` / ``Name.``); the cursor goes before the
name and the target is the rest of that line (6 to 120 characters). Each task
is completed twice by the same model, with the same prompt budget: once with the repository
context that ``WorkspaceIndex.select_context`` chooses, once without any. Single-line, greedy.

Figures: exact match (prediction == target, whitespace-trimmed), edit similarity
(1 - Levenshtein / longer length), and name match (the prediction starts with the imported name,
the part only another file can tell).
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsp_server.config import Config, ContextConfig  # noqa: E402
from lsp_server.completion.completer import Completer, Cursor  # noqa: E402
from lsp_server.context import WorkspaceIndex  # noqa: E402

DEFAULT_PACKAGES = "pathspec,watchdog,gguf,pygls,_pytest,pluggy,cattrs,jinja2,requests,urllib3"


@dataclass
class Task:
    package: str
    path: str
    """Workspace-relative file path."""
    line: int
    name: str
    prefix: str
    suffix: str
    target: str


def site_packages() -> Path:
    import pathspec  # any installed package: its parent is the site-packages directory

    return Path(pathspec.__file__).resolve().parent.parent


def imported_names(tree: ast.Module, package: str) -> dict[str, int]:
    """Names bound by top-level imports from the same package → line of the import."""
    names: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (
                node.level > 0 or (node.module or "").split(".")[0] == package):
            for a in node.names:
                if a.name != "*":
                    names[a.asname or a.name] = node.end_lineno or node.lineno
    return names


def tasks_for_file(package: str, root: Path, path: Path) -> list[Task]:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    names = imported_names(tree, package)
    lines = text.split("\n")
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln) + 1)
    seen: set[tuple[str, int]] = set()
    out: list[Task] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                and node.id in names and node.lineno > names[node.id]):
            continue
        row, col = node.lineno - 1, node.col_offset
        line = lines[row]
        if line[:col].strip().startswith(("#", "@")) or (node.id, row) in seen:
            continue
        target = line[col:].rstrip()
        after = line[col + len(node.id):col + len(node.id) + 1]
        # A call or an attribute: where the other module's definition decides the completion.
        if after not in ("(", ".") or not 6 <= len(target) <= 120:
            continue
        seen.add((node.id, row))
        start = offsets[row] + col
        end = offsets[row] + len(line.rstrip())
        out.append(Task(package, path.relative_to(root).as_posix(), row + 1, node.id,
                        text[:start], text[end:], target))
    return out


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def edit_similarity(pred: str, target: str) -> float:
    pred, target = pred.strip(), target.strip()
    if not pred and not target:
        return 1.0
    return 1.0 - levenshtein(pred, target) / max(len(pred), len(target))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packages", default=DEFAULT_PACKAGES)
    ap.add_argument("--tasks", type=int, default=60, help="tasks in total, spread over packages")
    ap.add_argument("--model", default="", help="GGUF model (default: the embedded model)")
    ap.add_argument("--ctx-size", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="write per-task results as JSON here")
    args = ap.parse_args()
    from lsp_server.completion.session import ModelSession

    rng = random.Random(args.seed)
    site = site_packages()
    packages = [p for p in args.packages.split(",") if (site / p).is_dir()]
    tmp = Path(tempfile.mkdtemp(prefix="codefill-crossfile-"))
    try:
        by_pkg: dict[str, list[Task]] = {}
        for pkg in packages:
            root = tmp / pkg
            shutil.copytree(site / pkg, root / pkg,
                            ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
            found: list[Task] = []
            for path in sorted((root / pkg).rglob("*.py")):
                found += tasks_for_file(pkg, root, path)
            by_pkg[pkg] = found
        quota = max(1, args.tasks // max(1, len(packages)))
        tasks: list[Task] = []
        for pkg in packages:
            pool = by_pkg[pkg]
            tasks += rng.sample(pool, min(quota, len(pool)))
        print(f"{len(tasks)} tasks from {len(packages)} packages "
              f"({', '.join(f'{p}: {len(by_pkg[p])}' for p in packages)} candidates)",
              file=sys.stderr)

        config = Config()
        config.engine.model = args.model
        config.engine.context_size = args.ctx_size
        config.prompt.max_tokens = args.max_tokens
        config.engine.time_budget_ms = 60000
        results = []
        indexes: dict[str, WorkspaceIndex] = {}
        with ModelSession(config) as session:
            session.engine.wait_ready()
            completer = Completer(session)
            budget = session.context_allowance(completer.budget())  # for the report
            t0 = time.perf_counter()
            for i, t in enumerate(tasks):
                if t.package not in indexes:
                    idx = WorkspaceIndex([tmp / t.package], ContextConfig(watch=False))
                    idx.build()
                    indexes[t.package] = idx
                cursor = Cursor(t.prefix, t.suffix, t.path, str(tmp / t.package / t.path))
                sel = Completer(session, context=indexes[t.package]).select_context(
                    cursor, completer.budget())
                assert sel is not None
                row = {**asdict(t), "context_files": [f.path for f in sel.files]}
                del row["prefix"], row["suffix"]
                for mode, ctx in (("without", []), ("with", sel.files)):
                    c = completer.complete(cursor, single_line=True, context=ctx)
                    pred = c.text.split("\n", 1)[0]
                    row[mode] = {"prediction": pred,
                                 "exact": pred.strip() == t.target.strip(),
                                 "edit_similarity": edit_similarity(pred, t.target),
                                 "name": pred.lstrip().startswith(t.name),
                                 "prompt_tokens": len(c.prompt.tokens),
                                 "context_tokens": c.prompt.n_context,
                                 "seconds": c.timings["total"]}
                results.append(row)
                print(f"[{i + 1}/{len(tasks)}] {t.package}/{t.path}:{t.line} "
                      f"{'✓' if row['with']['exact'] else '·'}{'✓' if row['without']['exact'] else '·'}"
                      f" {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            model_name = session.model_path.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))

    def agg(rows: list[dict], mode: str, key: str) -> float:
        return 100 * statistics.fmean(float(r[mode][key]) for r in rows)

    print(f"model {model_name}, context budget {budget} tokens, {len(results)} tasks, "
          f"max {args.max_tokens} tokens, single line, greedy\n")
    print("| package | tasks | exact match without → with | edit similarity without → with | "
          "name match without → with | context files (median) | prompt tokens without / with |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    groups = {p: [r for r in results if r["package"] == p] for p in packages}
    groups["all"] = results
    for name, rows in groups.items():
        if not rows:
            continue
        print(f"| {name} | {len(rows)} | {agg(rows, 'without', 'exact'):.1f} % → "
              f"{agg(rows, 'with', 'exact'):.1f} % | "
              f"{agg(rows, 'without', 'edit_similarity'):.1f} → "
              f"{agg(rows, 'with', 'edit_similarity'):.1f} | "
              f"{agg(rows, 'without', 'name'):.1f} % → {agg(rows, 'with', 'name'):.1f} % | "
              f"{statistics.median(len(r['context_files']) for r in rows):.0f} | "
              f"{statistics.median(r['without']['prompt_tokens'] for r in rows):.0f} / "
              f"{statistics.median(r['with']['prompt_tokens'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
