"""How much of the prompt must the engine re-evaluate per keystroke? Sticky prefix cut vs line by line.

    .venv/bin/python bench/prompt_stability.py [--chars 600] [--files 4]

llama.cpp reuses its KV cache only up to the first token that differs from the previous prompt
(engine.kv_reuse). When the text before the cursor is longer than the prompt's prefix budget,
the assembler cuts it at a line start; cut line by line, the cut moves down a line whenever
typing pushes the prefix over budget, the prompt's start changes and the whole prefix is
evaluated again (~2,500 tokens for a 4,096-token context). A sticky cut (``Budget.sticky_share``)
moves in larger steps and keeps the start for a while.

The replay uses the daemon's assembler and the embedded model's own tokenizer (vocabulary only,
no weights): for a few long standard-library files, ``--chars`` characters from 3/4 of the file
on are deleted and typed again one by one (the text after them stays put), with two other stdlib
modules as repository context and the local session's budget (4,096-token context, 64 tokens for
generation). For each keystroke the prompt is compared with the previous one: the tokens after
the common prefix are what the engine must evaluate (counted), and the assembly's own time
(the tokenizer's work; timed, so it needs a quiet machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from lsp_server.engine.llama_engine import common_prefix_len  # noqa: E402
from lsp_server.prompt.assemble import Budget, ContextFile, assemble  # noqa: E402
from lsp_server.prompt.templates import Order, get_template  # noqa: E402

FILES = ("argparse.py", "difflib.py", "inspect.py", "tarfile.py", "pathlib.py", "typing.py")
CONTEXT = ("textwrap.py", "shutil.py")
SETUPS = {  # label → (template, order); PSM re-evaluates the suffix at every keystroke anyway
    "plain (embedded default)": ("plain", None),
    "gemma3-fim SPM": ("gemma3-fim", Order.SPM),
}


def replay(tok, template: str, order: Order | None, sticky: float, chars: int,  # noqa: ANN001
           files: list[Path], context: list[ContextFile], n_ctx: int, max_tokens: int
           ) -> dict[str, float]:
    evaluated: list[int] = []
    prefix_kept: list[int] = []
    seconds: list[float] = []
    for f in files:
        doc = f.read_text()
        start = len(doc) * 3 // 4
        start = doc.index("\n", start) + 1  # retype from a line start
        prev: list[int] | None = None
        # The span is deleted and typed again: the text after it stays, as when typing.
        before, span, after = doc[:start], doc[start:start + chars], doc[start + chars:]
        for i in range(len(span) + 1):
            t = time.perf_counter()
            p = assemble(get_template(template), tok, prefix=before + span[:i], suffix=after,
                         budget=Budget.for_window(n_ctx, max_tokens, sticky_share=sticky),
                         path=f.name, context=context, order=order)
            seconds.append(time.perf_counter() - t)
            if prev is not None:  # the first prompt of a file is evaluated whole either way
                # As the engine keeps its KV cache (engine/llama_engine.py).
                keep = common_prefix_len(np.asarray(prev), np.asarray(p.tokens))
                evaluated.append(len(p.tokens) - min(keep, len(p.tokens) - 1))
                prefix_kept.append(p.n_prefix)
            prev = p.tokens
    ev = sorted(evaluated)
    return {"keystrokes": len(ev), "mean": statistics.fmean(ev), "p50": ev[len(ev) // 2],
            "p95": ev[int(len(ev) * 0.95)], "max": ev[-1],
            "over100": sum(e > 100 for e in ev), "total": sum(ev),
            "prefix": statistics.fmean(prefix_kept), "ms": 1000 * statistics.median(seconds)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", type=int, default=150, help="characters retyped per file")
    ap.add_argument("--files", type=int, default=2, help=f"how many of {', '.join(FILES)}")
    ap.add_argument("--sticky", type=float, default=0.25,
                    help="Budget.sticky_share of the sticky run")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args(argv)
    from lsp_server.models.resolve import resolve_model
    from model.tokenizer import GGUFTokenizer

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    tok = GGUFTokenizer(resolve_model(""))
    files = [stdlib / n for n in FILES[:a.files]]
    context = [ContextFile(n, (stdlib / n).read_text()[:6000]) for n in CONTEXT]
    print(f"retyping {a.chars} characters at 3/4 of {', '.join(f.name for f in files)} "
          f"({', '.join(f'{len(f.read_text()):,}' for f in files)} characters); context "
          f"{', '.join(CONTEXT)}; {a.n_ctx}-token context, {a.max_tokens} for generation\n")
    print("| prompt | prefix cut | keystrokes | tokens evaluated / keystroke: mean | p50 | p95 "
          "| max | keystrokes > 100 tokens | prefix tokens kept (mean) | assembly ms (median) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, (template, order) in SETUPS.items():
        runs = {}
        for name, sticky in (("line by line", 0.0), (f"sticky {a.sticky:g}", a.sticky)):
            r = runs[name] = replay(tok, template, order, sticky, a.chars, files, context,
                                    a.n_ctx, a.max_tokens)
            print(f"| {label} | {name} | {r['keystrokes']} | {r['mean']:.1f} | {r['p50']} "
                  f"| {r['p95']} | {r['max']} | {r['over100']} | {r['prefix']:.0f} | {r['ms']:.0f} |",
                  flush=True)
        base, new = runs["line by line"], runs[f"sticky {a.sticky:g}"]
        print(f"|  | ratio sticky / line by line | | {new['mean'] / base['mean']:.2f} | | | | "
              f"| {new['prefix'] / base['prefix']:.2f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
