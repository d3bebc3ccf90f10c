"""`codefill bench BENCH …`: quality benchmarks through the product's completion path.

A group of subcommands (one registry entry each) so later benchmarks can join ``infill``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Callable

from ..completion.rules import RULE_NAMES
from ..errors import CodefillError
from ..quality.data import BENCHMARKS, Benchmark, benchmark, load_tasks
from ..quality.harness import (BASELINE, LINE_MODES, ModelCompleter, ablation_configs,
                               canonical_completer)
from ..quality.harness import run as run_harness
from ..quality.metrics import Summary, TaskResult, summarize
from ..quality.sandbox import Limits
from .common import add_candidate_options, add_model_options, config_from_args, progress

HELP = "measure completion quality on benchmarks (HumanEval infilling: `codefill bench infill`)"

BENCH_TIME_BUDGET_MS = 60000
"""A generous generation budget: on a busy machine the editor's 5 s budget would measure the
machine's load, not the model."""


def _add_infill(p: argparse.ArgumentParser) -> None:
    sel = p.add_argument_group("tasks")
    sel.add_argument("--benchmark", required=True, metavar="NAME",
                     help=f"one of {', '.join(BENCHMARKS)}")
    sel.add_argument("--limit", type=int, default=None, help="run at most N tasks")
    sel.add_argument("--every", type=int, default=1, metavar="K",
                     help="take every K-th task of the file (a spread-out subset)")
    sel.add_argument("--offset", type=int, default=0, help="skip the first tasks of the file")
    sel.add_argument("--data-dir", type=Path, default=None,
                     help="directory with the HumanEval infilling .jsonl.gz files "
                          "(default: the copy shipped with codefill)")
    sel.add_argument("--canonical", action="store_true",
                     help="execute the canonical solutions instead of completions (checks the "
                          "harness; loads no model)")
    gen = p.add_argument_group("completions")
    gen.add_argument("--lines", choices=tuple(LINE_MODES), default=None,
                     help="suggestion length: single/multi, or auto = the server's own "
                          "decision (default: single for single-line, multi for multi-line, "
                          "auto for random-span)")
    gen.add_argument("--max-tokens", type=int, default=None,
                     help="generated tokens per task (default per benchmark: 64/256/128)")
    gen.add_argument("--time-budget-ms", type=int, default=BENCH_TIME_BUDGET_MS,
                     help=f"wall-clock limit of one generation ({BENCH_TIME_BUDGET_MS})")
    gen.add_argument("--samples", type=int, default=1,
                     help="completions per task (more than 1 needs --temperature > 0)")
    gen.add_argument("--temperature", type=float, default=0.0,
                     help="sampling temperature; 0 = greedy (default)")
    gen.add_argument("--seed", type=int, default=0, help="seed of sample 0 (sample i: seed+i)")
    gen.add_argument("--k", default="1", metavar="K[,K…]",
                     help="report pass@k for these k (each ≤ --samples)")
    gen.add_argument("--disable-rule", action="append", default=[], metavar="RULE",
                     help=f"switch a completion rule off (repeatable): {', '.join(sorted(RULE_NAMES))}")
    gen.add_argument("--ablation", action="store_true",
                     help="run the baseline and every rule switched off alone; print a table")
    ex = p.add_argument_group("execution")
    ex.add_argument("--timeout", type=float, default=10.0, help="seconds per program (10)")
    ex.add_argument("--memory-mb", type=int, default=1024, help="memory per program (1024)")
    ex.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="programs run in parallel (CPU count)")
    out = p.add_argument_group("output")
    out.add_argument("--output", type=Path, default=None, metavar="JSONL",
                     help="write one JSON line per task (completion, passed, reason, …)")
    out.add_argument("--summary", type=Path, default=None, metavar="JSON",
                     help="write the summary as JSON")
    add_candidate_options(p)
    add_model_options(p)


def _ks(text: str, samples: int) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise CodefillError(f"--k must be a comma-separated list of integers, got {text!r}",
                            "e.g. --k 1,5") from None
    bad = [k for k in ks if k < 1 or k > samples]
    if not ks or bad:
        raise CodefillError(f"pass@k needs 1 ≤ k ≤ --samples ({samples}), got --k {text}",
                            f"use --samples ≥ {max(ks or [1])} with --temperature > 0")
    return ks


def _check_args(args: argparse.Namespace) -> tuple[frozenset[str], list[int], Limits]:
    unknown = sorted(set(args.disable_rule) - RULE_NAMES)
    if unknown:
        raise CodefillError(f"unknown rule name(s) {', '.join(unknown)}",
                            f"use one of {', '.join(sorted(RULE_NAMES))}")
    if args.samples < 1:
        raise CodefillError(f"--samples must be ≥ 1, got {args.samples}", "use --samples 1")
    if args.samples > 1 and args.temperature <= 0:
        raise CodefillError("several samples of greedy decoding are all the same completion",
                            "add --temperature 0.8 (or use --samples 1)")
    if args.canonical and (args.ablation or args.samples > 1):
        raise CodefillError("--canonical runs the masked text once per task",
                            "drop --ablation/--samples")
    if args.timeout <= 0 or args.memory_mb < 64 or args.workers < 1:
        raise CodefillError("execution limits out of range", "use --timeout > 0, "
                            "--memory-mb ≥ 64, --workers ≥ 1")
    limits = Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    return frozenset(args.disable_rule), _ks(args.k, args.samples), limits


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _describe(bench: Benchmark, n: int, args: argparse.Namespace, model: str) -> str:
    nth = {2: "2nd", 3: "3rd"}.get(args.every, f"{args.every}th")
    subset = f", every {nth}" if args.every > 1 else ""
    subset += f" from #{args.offset}" if args.offset else ""
    return (f"benchmark {bench.name}: {n} tasks{subset}; {model}; lines "
            f"{args.lines or bench.lines}, max tokens {args.max_tokens or bench.max_tokens}"
            + (f", temperature {args.temperature:g}, {args.samples} samples"
               if args.temperature > 0 else ", greedy"))


def _summary_lines(s: Summary) -> list[str]:
    passes = "  ".join(f"pass@{k} {_pct(v)}" for k, v in s.pass_at.items())
    if s.pass_list is not None:
        passes += f"  any of the ranked candidates {_pct(s.pass_list)} " \
                  f"({s.mean_candidates:.1f} per task)"
    return [
        f"{passes}  exact match {_pct(s.exact_match)}",
        f"latency mean {s.mean_latency_ms:.0f} ms, median {s.median_latency_ms:.0f} ms; "
        f"tokens generated {s.tokens_generated} ({s.mean_tokens:.1f} per completion)",
        "results: " + ", ".join(f"{k} {v}" for k, v in s.statuses.items()),
        "stops: " + ", ".join(f"{k} {v}" for k, v in s.stops.items()),
    ]


def _ablation_table(summaries: dict[str, Summary]) -> list[str]:
    base = summaries[BASELINE].pass_at[1]
    rows = ["| configuration | pass@1 | Δ pass@1 | exact match | tokens/task | mean latency |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in summaries.items():
        delta = "" if name == BASELINE else f"{100 * (s.pass_at[1] - base):+.1f}"
        rows.append(f"| {name} | {_pct(s.pass_at[1])} | {delta} | {_pct(s.exact_match)} | "
                    f"{s.mean_tokens:.1f} | {s.mean_latency_ms:.0f} ms |")
    return rows


def _write(args: argparse.Namespace, results: dict[str, list[TaskResult]],
           summaries: dict[str, Summary], header: str) -> None:
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            for rs in results.values():
                for r in rs:
                    f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    if args.summary:
        data = {"run": header, "configs": {name: vars(s) for name, s in summaries.items()}}
        args.summary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def run_infill(args: argparse.Namespace) -> int:
    bench = benchmark(args.benchmark)
    disabled, ks, limits = _check_args(args)
    tasks = load_tasks(bench.name, limit=args.limit, every=args.every, offset=args.offset,
                       data_dir=args.data_dir)
    if not tasks:
        raise CodefillError("the task selection is empty", "lower --offset or raise --limit")
    single_line = LINE_MODES[args.lines or bench.lines]
    configs = ablation_configs(disabled, single_line) if args.ablation else {BASELINE: disabled}
    if args.canonical:
        header = _describe(bench, len(tasks), args, "canonical solutions")
        results = run_harness(canonical_completer, tasks, configs=configs, limits=limits,
                      workers=args.workers, progress=progress)
    else:
        from ..completion.session import ModelSession  # loads llama.cpp: only when needed

        config = config_from_args(args)
        with ModelSession(config, progress=progress) as session:
            session.engine.wait_ready()  # a model that cannot load fails here, in one line
            model = (f"model {session.model_path.name} (template {session.template.name}, "
                     f"{session.info.quantization})"
                     + (f" + adapter {session.adapter.path.name} "
                        f"({session.adapter.tokens_seen:,} tokens trained)"
                        if session.adapter else ""))
            header = _describe(bench, len(tasks), args, model)
            progress(header)
            completer = ModelCompleter(session, bench, lines=args.lines,
                                       max_tokens=args.max_tokens,
                                       temperature=args.temperature, seed=args.seed)
            results = run_harness(completer, tasks, configs=configs, samples=args.samples,
                          limits=limits, workers=args.workers, progress=progress)
    summaries = {name: summarize(rs, ks) for name, rs in results.items()}
    print(header)
    if args.ablation:
        print("\n".join(_ablation_table(summaries)))
    else:
        print("\n".join(_summary_lines(summaries[BASELINE])))
    _write(args, results, summaries, header)
    return 0


# bench name → (help, add_arguments, run)
BENCHES: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                         Callable[[argparse.Namespace], int]]] = {
    "infill": ("HumanEval infilling pass@1 (single-line, multi-line, random-span) of any GGUF, "
               "through the editor's completion path, executed in a sandbox",
               _add_infill, run_infill),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, (help_text, add, run_fn) in BENCHES.items():
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks and llama.cpp's log instead of one-line errors")
        add(q)
        q.set_defaults(_bench_run=run_fn)


def run(args: argparse.Namespace) -> int:
    return args._bench_run(args)
