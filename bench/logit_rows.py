"""What a row of logits costs: llama.cpp batches with and without logits, and where the time of
several candidates goes.

    .venv/bin/python bench/logit_rows.py [--model PATH] [--threads 2] [--reps 9] [--json FILE]

Every row of logits is a product with the model's output layer (for Gemma 3, 262,144 × 640,
tied to the token embeddings), so the figures are, for one batch of a prompt held in the KV
cache (medians over ``--reps``):

- *decode steps*: R sequences advancing one token each (as the candidates' alternatives do),
  R = 1…8, with a row of logits per token and with none; the difference is the output layer;
- *batches of one sequence*: N tokens (as a candidate's scoring batch: its last token and the
  scored tokens of the code after the cursor), N = 8…34 and a few larger, all with logits and
  none;
- *where the time goes*: ``bench/engine.py --candidates N``'s single-line suggestions, with the
  engine's alternatives decoding and scoring timed (:class:`CandidateDecoder`'s ``_decode`` and
  ``_score``), per suggestion with N candidates against the whole suggestion with one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import engine as engine_bench  # noqa: E402
from lsp_server.engine import candidates as engine_candidates  # noqa: E402
from lsp_server.engine.candidates import Batch  # noqa: E402
from lsp_server.engine.llama_loader import _llama_factory, cpu_has_amx  # noqa: E402
from lsp_server.models import resolve_model  # noqa: E402

STEP_ROWS = tuple(range(1, 9))
BATCH_TOKENS = tuple(range(8, 35)) + (48, 64)


def median_ms(run: Callable[[], None], reps: int) -> float:
    times = []
    for _ in range(reps + 1):  # the first warms up
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times[1:])


def batch_costs(model: str, threads: int, reps: int, step_rows: tuple[int, ...] = STEP_ROWS,
                batch_tokens: tuple[int, ...] = BATCH_TOKENS) -> dict[str, list[dict[str, float]]]:
    """Decode steps of R sequences (``step_rows``) and batches of N tokens of one sequence
    (``batch_tokens``), with and without logits, after a 600-token prompt of real code."""
    llm = _llama_factory(model_path=model, n_ctx=2048, n_batch=512, n_ubatch=512,
                         n_threads=threads, n_threads_batch=threads, n_gpu_layers=0,
                         swa_full=True, use_extra_bufts=not cpu_has_amx())
    tokens = llm.tokenize(engine_bench.source_text(4000).encode(), add_bos=True)[:600]
    llm.eval(tokens)
    P, mem = len(tokens), llm._ctx
    batch = Batch(llm, max(batch_tokens + step_rows))

    def fresh(seqs: range) -> None:
        for s in seqs:  # each sequence a copy of the prompt, nothing after it
            mem.kv_cache_seq_rm(s, -1, -1)
            mem.kv_cache_seq_cp(0, s, 0, P)

    def step(rows: int, logits: bool) -> Callable[[], None]:
        def run() -> None:
            batch.clear()
            for s in range(1, rows + 1):
                batch.add(tokens[-1], P, [s], logits)
            batch.decode()
        return run

    def block(n: int, logits: bool) -> Callable[[], None]:
        def run() -> None:
            batch.clear()
            for k in range(n):
                batch.add(tokens[10 + k % 50], P + k, [1], logits)
            batch.decode()
        return run

    def measured(make: Callable[[int, bool], Callable[[], None]], sizes: tuple[int, ...],
                 seqs: Callable[[int], range], key: str) -> list[dict[str, float]]:
        out = []
        for n in sizes:
            row: dict[str, float] = {key: n}
            for logits in (True, False):
                run = make(n, logits)

                def again(run: Callable[[], None] = run, n: int = n) -> None:
                    fresh(seqs(n))
                    run()
                # The copies are outside the timed decode: time them alone and subtract.
                row["logits_ms" if logits else "none_ms"] = median_ms(again, reps)
            row["copy_ms"] = median_ms(lambda n=n: fresh(seqs(n)), reps)
            for k in ("logits_ms", "none_ms"):
                row[k] = round(row[k] - row["copy_ms"], 2)
            row["output_ms_per_row"] = round((row["logits_ms"] - row["none_ms"]) / n, 2)
            out.append(row)
        return out

    steps = measured(step, step_rows, lambda n: range(1, n + 1), "rows")
    blocks = measured(block, batch_tokens, lambda n: range(1, 2), "tokens")
    batch.close()
    llm.close()
    return {"steps": steps, "batches": blocks}


def breakdown(model: str, threads: int, reps: int, n: int) -> dict[str, Any]:
    """bench/engine.py's candidates cost with the engine's alternatives and scoring timed."""
    spent: dict[str, list[float]] = {"_decode": [], "_score": []}
    originals = {name: getattr(engine_candidates.CandidateDecoder, name) for name in spent}

    def timed(name: str) -> Callable[..., None]:
        def wrapper(self: Any, *a: Any) -> None:
            t = time.perf_counter()
            try:
                originals[name](self, *a)
            finally:
                spent[name].append(time.perf_counter() - t)
        return wrapper

    for name in spent:
        setattr(engine_candidates.CandidateDecoder, name, timed(name))
    try:
        args = argparse.Namespace(model=model, threads=threads, reps=reps, gen=48, candidates=n)
        cost = engine_bench.candidates_cost(args)
    finally:
        for name, fn in originals.items():
            setattr(engine_candidates.CandidateDecoder, name, fn)
    # One call of each per suggestion with n candidates, the two warm-up ones (bench/engine.py
    # measures memory on them) included.
    suggestions = len(spent["_score"])
    return {"candidates": n, "suggestions": suggestions,
            "median_wall_ms_1": round(1000 * cost["medians"]["wall_1"], 1),
            "median_wall_ms_n": round(1000 * cost["medians"]["wall_n"], 1),
            "mean_wall_ms_1": round(1000 * statistics.mean(cost["rows"]["wall_1"]), 1),
            "mean_wall_ms_n": round(1000 * statistics.mean(cost["rows"]["wall_n"]), 1),
            "alternatives_ms": round(1000 * statistics.mean(spent["_decode"]), 1),
            "scoring_ms": round(1000 * statistics.mean(spent["_score"]), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--candidates", type=int, default=5)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    model = str(resolve_model(a.model or None))
    costs = batch_costs(model, a.threads, a.reps)
    print(f"model {Path(model).name}, {a.threads} threads, median of {a.reps}\n")
    print("| decode step: sequences | with logits | without | output layer a row |")
    print("| ---: | ---: | ---: | ---: |")
    for r in costs["steps"]:
        print(f"| {r['rows']:.0f} | {r['logits_ms']:.1f} ms | {r['none_ms']:.1f} ms "
              f"| {r['output_ms_per_row']:.2f} ms |")
    print("\n| one sequence: tokens | all with logits | none | output layer a row |")
    print("| ---: | ---: | ---: | ---: |")
    for r in costs["batches"]:
        print(f"| {r['tokens']:.0f} | {r['logits_ms']:.1f} ms | {r['none_ms']:.1f} ms "
              f"| {r['output_ms_per_row']:.2f} ms |")
    split = breakdown(a.model, a.threads, a.reps, a.candidates)
    print(f"\nper suggestion: one candidate {split['mean_wall_ms_1']:.0f} ms, {a.candidates} "
          f"candidates {split['mean_wall_ms_n']:.0f} ms (means); decoding the alternatives "
          f"{split['alternatives_ms']:.0f} ms and scoring {split['scoring_ms']:.0f} ms (means "
          f"over {split['suggestions']} suggestions with {a.candidates})")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"model": Path(model).name, "threads": a.threads,
                                      "reps": a.reps, **costs, "breakdown": split},
                                     indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
