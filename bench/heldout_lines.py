"""Exact match of single-line completions on held-out repository files (docs/default-model.md).

    .venv/bin/python bench/heldout_lines.py [--per-file 1] [--files N] [--adapter X.gguf]
        [--template auto|plain|gemma3-fim] [--order auto|psm|spm] [--ctx-size 4096]
        [--output results.jsonl]

The files are the FIM training corpus's held-out split (``is_eval_path``: 2 % of the paths by a
hash, never a training target; ``model.data.sources.build_corpus`` over this venv, the same files
the run's manifest lists). In each file ``--per-file`` lines with code are drawn with a seeded
rng. The cursor is after the line's indentation (where an editor's auto-indent leaves it; with
``--cursor inside`` at a seeded column inside the line's code instead), the text after the cursor is the rest of the file from the line's end, and the repository context is
the daemon's selection for that file over the corpus's import graph
(``model.data.repo_select``, what the daemon would pick in a workspace holding the corpus). The
suggestion comes from the product's completion path (``CompletionBackend.complete``,
single-line, greedy: the template, prompt assembly, stop rules and post-processors the editor
gets) and counts when it equals the rest of the line (``exact_match``: trailing blanks aside).
Latency is the whole ``complete`` call; run it on a quiet machine to compare latencies.

    .venv/bin/python bench/heldout_lines.py --language typescript|cpp|lua [--files 50] …

The same in another language, on code the repository installs (``bench/common/corpora.py``): the
model never trained on any of it; the files are spread evenly over the corpus's sorted paths,
and the repository context is the daemon's selection over that corpus's import graph (where the
daemon reads the language's imports: JavaScript / TypeScript and the C family, not Lua). Files
the daemon would not read (secret-looking names such as ``CredentialEntity.ts``) are left out.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common.corpora import OTHER_LANGUAGES, language_files, spread  # noqa: E402
from lsp_server.cli.common import (add_candidate_options, add_model_options,  # noqa: E402
                                   config_from_args)
from lsp_server.completion.completer import Completer, Cursor  # noqa: E402
from lsp_server.completion.factory import open_backend  # noqa: E402
from lsp_server.completion.privacy import refusal  # noqa: E402
from lsp_server.config import Config, ContextConfig  # noqa: E402
from lsp_server.context.graph import DependencyGraph  # noqa: E402
from lsp_server.context.packing import TokenCounter  # noqa: E402
from lsp_server.quality.data import exact_match  # noqa: E402
from model.data.dataset import is_eval_path  # noqa: E402
from model.data.fim import line_offsets  # noqa: E402
from model.data.repo_select import select_for_target  # noqa: E402
from model.data.sources import build_corpus  # noqa: E402

EVAL_SHARE = 0.02
"""The training run's held-out share (``TrainConfig.eval_share``)."""


@dataclass(frozen=True)
class LineTask:
    path: str
    line: int
    """0-based line number."""
    prefix: str
    suffix: str
    expected: str


#: Where the cursor goes in a drawn line.
CURSORS = ("indent", "inside")


def line_tasks(texts: dict[str, str], paths: list[str], per_file: int, seed: int,
               cursor: str = "indent") -> list[LineTask]:
    """``per_file`` lines with code from each file, the cursor after the indentation
    (``indent``) or at a seeded column inside the line's code (``inside``: after at least one of
    its characters, before at least one; the lines of ``indent`` but those of one character)."""
    tasks: list[LineTask] = []
    for path in paths:
        text = texts[path]
        lines = text.splitlines(keepends=True)
        starts = line_offsets(lines)
        code = [i for i, line in enumerate(lines) if line.strip()]
        for i in sorted(random.Random(f"{seed}:{path}").sample(code, min(per_file, len(code)))):
            line = lines[i]
            body = line.rstrip("\r\n")
            col = starts[i] + len(body) - len(body.lstrip(" \t"))
            end = starts[i] + len(body)
            if cursor == "inside":
                if end - col < 2:
                    continue  # one character: no column inside it
                col = random.Random(f"{seed}:{path}:{i}").randrange(col + 1, end)
            tasks.append(LineTask(path, i, text[:col], text[end:], text[col:end]))
    return tasks


@dataclass
class HeldOut:
    """The held-out files of the corpus and the lines drawn from them."""

    texts: dict[str, str]
    graph: DependencyGraph
    files: list[str]
    tasks: list[LineTask]
    language: str = "python"
    """The LSP languageId of every file."""


def held_out_files(venv: str, bench_dir: str) -> tuple[dict[str, str], list[str]]:
    """The corpus's texts by path, and the held-out paths among them (sorted)."""
    texts = build_corpus(venv, bench_dir=bench_dir).corpus.files
    return texts, sorted(p for p in texts if is_eval_path(p, EVAL_SHARE))


def held_out(venv: str, bench_dir: str, per_file: int, seed: int, files: int | None = None,
             language: str = "python", cursor: str = "indent") -> HeldOut:
    """Python: the training corpus's held-out files (the first ``files``); another language:
    ``files`` spread over that language's corpus, the whole corpus being the repository."""
    if language == "python":
        texts, held = held_out_files(venv, bench_dir)
        held = held[:files]
    else:
        texts, every = language_files(language, venv)
        # What the daemon would never read or complete in (secret-looking names or contents).
        config = Config()
        texts = {p: t for p, t in texts.items() if refusal(p, t, config) is None}
        held = spread([p for p in every if p in texts], files)
    return HeldOut(texts, DependencyGraph.from_texts(texts), held,
                   line_tasks(texts, held, per_file, seed, cursor), language)


def run_lines(config: Config, data: HeldOut, max_tokens: int, out: IO[str] | None = None,
              label: str = "") -> tuple[list[dict[str, Any]], str]:
    """Complete every held-out line through the product's completion path; the rows (one per
    line, also written to ``out`` as JSON lines) and the model's label."""
    backend = open_backend(config)
    rows: list[dict[str, Any]] = []
    try:
        backend.wait_ready()
        count = TokenCounter(backend.tokenizer, capacity=1 << 12)
        completer = Completer(backend)
        # The daemon's context allowance: exactly what the prompt's layout gives context.
        budget = backend.context_allowance(completer.budget(max_tokens))
        ctx_cfg = ContextConfig()
        outlines: dict = {}
        for k, task in enumerate(data.tasks):
            files = select_for_target(data.graph, data.texts, task.path, count, budget, ctx_cfg,
                                      outlines).files
            t0 = time.monotonic()
            c = completer.complete(Cursor(task.prefix, task.suffix, task.path,
                                          language=data.language),
                                   single_line=True, max_tokens=max_tokens, context=files)
            row = {"path": task.path, "line": task.line + 1, "expected": task.expected,
                   "completion": c.text, "exact": exact_match(c.text, task.expected),
                   "latency_s": round(time.monotonic() - t0, 3),
                   "tokens": c.stats.n_generated, "context_files": len(files),
                   "candidates": [dict(x.explain(), text=x.text,
                                       exact=exact_match(x.text, task.expected))
                                  for x in c.candidates]}
            rows.append(row)
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()
            if (k + 1) % 10 == 0:
                print(f"{label}{k + 1}/{len(data.tasks)}: exact {sum(r['exact'] for r in rows)}",
                      file=sys.stderr, flush=True)
    finally:
        backend.close()
    return rows, backend.label


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-file", type=int, default=1,
                    help="lines per held-out file (1; 6 gives the 500-line set that adapter "
                         "training stops on: bench/adapter_curve.py)")
    ap.add_argument("--files", type=int, default=None, help="at most N files (all: ~100)")
    ap.add_argument("--language", choices=["python", *OTHER_LANGUAGES], default="python",
                    help="python: the training corpus's held-out files; another: code in that "
                         "language that the repository installs (bench/common/corpora.py)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cursor", choices=CURSORS, default="indent",
                    help="indent: after the line's indentation (default); inside: at a seeded "
                         "column inside the line's code, as after typing part of it")
    ap.add_argument("--max-tokens", type=int, default=64, help="generated tokens per line (64)")
    ap.add_argument("--time-budget-ms", type=int, default=60000,
                    help="wall-clock limit of one generation (60000: the machine's load is not "
                         "the model)")
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    ap.add_argument("--bench-dir", default=str(ROOT.parent / "shared" / "benchmarks"))
    ap.add_argument("--output", type=Path, help="one JSON line per task (with --candidates > 1 "
                    "each candidate's text and scores too: bench/candidate_selector.py)")
    add_candidate_options(ap)
    add_model_options(ap)
    a = ap.parse_args(argv)

    t = time.perf_counter()
    data = held_out(a.venv, a.bench_dir, a.per_file, a.seed, a.files, a.language, a.cursor)
    print(f"{len(data.texts):,} {a.language} corpus files, {len(data.files)} held out, "
          f"{len(data.tasks)} lines ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    out = a.output.open("w") if a.output else None
    try:
        rows, label = run_lines(config_from_args(a), data, a.max_tokens, out)
    finally:
        if out:
            out.close()

    n = len(rows)
    exact = sum(r["exact"] for r in rows)
    lat = [r["latency_s"] for r in rows]
    print(f"model {label}; {n} lines of {len(data.files)} held-out files")
    listed = sum(r["exact"] or any(x["exact"] for x in r["candidates"]) for r in rows)
    print("| lines | exact match | any candidate | mean / median latency | tokens / line | empty |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {n} | {100 * exact / max(1, n):.1f} % ({exact}) | "
          f"{100 * listed / max(1, n):.1f} % ({listed}) | "
          f"{1000 * statistics.mean(lat):.0f} / {1000 * statistics.median(lat):.0f} ms | "
          f"{statistics.mean(r['tokens'] for r in rows):.1f} | "
          f"{sum(not r['completion'] for r in rows)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
