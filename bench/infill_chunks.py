"""A whole HumanEval infilling set in resumable chunks, then one summary (docs/default-model.md).

    .venv/bin/python bench/infill_chunks.py run --benchmark multi-line --dir DIR [--chunks 30]
        [-- CODEFILL BENCH INFILL OPTIONS, e.g. --threads 1 --workers 1 --adapter X --order spm]
    .venv/bin/python bench/infill_chunks.py summary DIR [--vs OTHER_DIR]
    .venv/bin/python bench/infill_chunks.py compare A.jsonl B.jsonl --benchmark NAME

The full multi-line set (5,815 tasks, up to 256 tokens each) is hours of CPU here, too long to
risk in one process, so ``run`` splits the file into ``--chunks`` contiguous slices and runs each
as its own ``codefill bench infill --offset O --limit N`` (the product's completion path, one
fresh model per slice), keeping each slice's results as ``chunk-OOOOO.jsonl.gz`` in DIR. A
killed run loses only the slice it was in; run the same command again to go on. Slices are
contiguous so that tasks of one problem follow each other (their prompts share a prefix that
llama.cpp keeps in its KV cache), and they run in a spread-out order (bit-reversed index) so that
an unfinished run already covers the whole file evenly, not only its first problems.

Several ``run`` processes on one machine may share one DIR (one per core): each locks a slice's
``.chunk-OOOOO.claim`` file (flock) before running it and skips slices locked by others. The
lock goes with its process, so a killed runner's slice is free again. (flock across machines on
a network file system is not relied on.)

DIR/run.json records the benchmark, the chunking and the options; running again with other
ones is refused, so slices of different settings never mix. ``summary`` merges the slices into
one summary; ``--vs`` compares two runs on the tasks both have (pass@1 each, tasks gained and
lost, the standard error of the paired difference, pass@1 by the length of the missing span).
``compare`` does the same for two ``codefill bench infill --output`` files (subsets).
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsp_server.quality.data import load_tasks  # noqa: E402
from lsp_server.quality.metrics import TaskResult, summarize  # noqa: E402

RUN_FILE = "run.json"
# Lines of the missing span (canonical middle) → bin label, for ``--vs``.
SPAN_BINS: tuple[tuple[int, str], ...] = ((1, "1 line"), (3, "2-3 lines"), (7, "4-7 lines"),
                                          (10**9, "8+ lines"))


def chunk_bounds(n_tasks: int, chunks: int) -> list[tuple[int, int]]:
    """(offset, limit) of ``chunks`` contiguous slices covering ``n_tasks`` (sizes differ by ≤ 1)."""
    chunks = max(1, min(chunks, n_tasks))
    base, extra = divmod(n_tasks, chunks)
    bounds, start = [], 0
    for i in range(chunks):
        size = base + (i < extra)
        bounds.append((start, size))
        start += size
    return bounds


def spread_order(n: int) -> list[int]:
    """0..n-1 ordered by bit-reversed index: every prefix of the order is spread over the range
    (0, n/2, n/4, 3n/4, …)."""
    bits = max(1, (n - 1).bit_length())
    return sorted(range(n), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))


def chunk_path(out_dir: Path, offset: int) -> Path:
    return out_dir / f"chunk-{offset:05d}.jsonl.gz"


def check_run_file(out_dir: Path, record: dict) -> None:
    """Write DIR/run.json, or refuse when it records other settings."""
    path = out_dir / RUN_FILE
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != record:
            raise SystemExit(f"{path} records another run ({old}); this one is {record}. "
                             "Use another --dir, or delete that directory to start again.")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def claim_slice(out_dir: Path, offset: int) -> IO[str] | None:
    """Claim slice ``offset`` for this process: the open claim file, locked (keep it open while
    the slice runs), or None when another live process holds it. The lock is the kernel's
    (flock): it goes with its process, so a killed runner's slice is free again at once."""
    f = open(out_dir / f".chunk-{offset:05d}.claim", "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")  # for people looking: who runs it
    f.flush()
    return f


def run_chunks(benchmark: str, out_dir: Path, chunks: int, extra: list[str],
               data_dir: Path | None = None) -> int:
    n_tasks = len(load_tasks(benchmark, data_dir=data_dir))
    bounds = chunk_bounds(n_tasks, chunks)
    record = {"benchmark": benchmark, "tasks": n_tasks, "chunks": len(bounds), "options": extra}
    if data_dir:
        record["data_dir"] = str(data_dir)
    check_run_file(out_dir, record)
    elsewhere = []
    for i in spread_order(len(bounds)):
        offset, limit = bounds[i]
        final = chunk_path(out_dir, offset)
        if final.exists():
            continue
        claim = claim_slice(out_dir, offset)
        if claim is None:
            elsewhere.append(offset)
            continue
        try:
            if final.exists():  # finished by another process between the two checks
                continue
            tmp = out_dir / f".chunk-{offset:05d}.jsonl"
            cmd = [sys.executable, "-m", "lsp_server.cli.main", "bench", "infill", "--benchmark",
                   benchmark, "--offset", str(offset), "--limit", str(limit), "--output",
                   str(tmp), *(["--data-dir", str(data_dir)] if data_dir else []), *extra]
            print(f"chunk {offset}+{limit}: {' '.join(cmd[3:])}", flush=True)
            done = subprocess.run(cmd, cwd=ROOT)
            if done.returncode != 0:
                print(f"chunk {offset} failed (exit {done.returncode}); stopping",
                      file=sys.stderr)
                return done.returncode
            # Written whole, then renamed: a chunk file on disk is always complete.
            part = final.with_name(final.name + ".part")
            with open(tmp, "rb") as src, gzip.open(part, "wb") as dst:
                dst.write(src.read())
            os.replace(part, final)
            tmp.unlink()
        finally:
            # Removed only once the slice is on disk: a runner that opened this file meanwhile
            # locks a deleted file, finds the slice finished and skips it.
            if final.exists():
                Path(claim.name).unlink(missing_ok=True)
            claim.close()
    if elsewhere:
        print(f"slice(s) {', '.join(map(str, elsewhere))} were claimed by another process "
              f"(see {out_dir}/.chunk-*.claim)", flush=True)
    print(summary_text(out_dir))
    return 0


def load_results(out_dir: Path) -> list[TaskResult]:
    """A run directory's finished chunks, or one ``codefill bench infill --output`` file."""
    if out_dir.is_file():
        return [TaskResult(**json.loads(line)) for line in out_dir.read_text().splitlines()
                if line.strip()]
    results = []
    for path in sorted(out_dir.glob("chunk-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            results.extend(TaskResult(**json.loads(line)) for line in f if line.strip())
    return results


def summary_text(out_dir: Path) -> str:
    record = json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
    results = load_results(out_dir)
    if not results:
        return f"{out_dir}: no chunk finished yet"
    s = summarize(results)
    return (f"{out_dir}: {record['benchmark']}, {s.tasks} of {record['tasks']} tasks "
            f"({len(list(out_dir.glob('chunk-*.jsonl.gz')))} of {record['chunks']} chunks), "
            f"options {' '.join(record['options']) or '(none)'}\n"
            f"pass@1 {100 * s.pass_at[1]:.1f} % ({sum(r.passed for r in results)})  "
            f"exact match {100 * s.exact_match:.1f} %  tokens/task {s.mean_tokens:.1f}  "
            f"latency mean {s.mean_latency_ms:.0f} ms, median {s.median_latency_ms:.0f} ms\n"
            + (f"any of the ranked candidates passes: {100 * s.pass_list:.1f} % "
               f"({s.mean_candidates:.1f} candidates per task)\n"
               if s.pass_list is not None else "")
            + f"results: {s.statuses}\nstops: {s.stops}")


def span_bin(canonical: str) -> str:
    lines = max(1, len(canonical.rstrip("\n").split("\n")))
    return next(label for top, label in SPAN_BINS if lines <= top)


def compare_text(a_dir: Path, b_dir: Path, benchmark: str = "") -> str:
    a = {r.task_id: r for r in load_results(a_dir)}
    b = {r.task_id: r for r in load_results(b_dir)}
    common = sorted(a.keys() & b.keys())
    if not common:
        return "no task is in both runs yet"
    gained = sum(b[t].passed and not a[t].passed for t in common)
    lost = sum(a[t].passed and not b[t].passed for t in common)
    pa, pb = (sum(x[t].passed for t in common) for x in (a, b))
    n = len(common)
    # Paired difference d_t = b_t - a_t in {-1, 0, 1}: SE of its mean, in points.
    mean_d = (gained - lost) / n
    se = 100 * (max(0.0, (gained + lost) / n - mean_d ** 2) / n) ** 0.5
    empty = [sum(not x[t].completion.strip() for t in common) for x in (a, b)]
    lines = [f"{n} tasks in both: {a_dir.name} {100 * pa / n:.1f} % ({pa}), "
             f"{b_dir.name} {100 * pb / n:.1f} % ({pb}); {b_dir.name} gains {gained}, "
             f"loses {lost} (difference {100 * mean_d:+.1f} points, SE {se:.1f}); "
             f"empty completions {empty[0]} vs {empty[1]}"]
    record = ({"benchmark": benchmark} if benchmark else
              json.loads((a_dir / RUN_FILE).read_text(encoding="utf-8")))
    data_dir = Path(record["data_dir"]) if record.get("data_dir") else None
    canon = {t.task_id: t.canonical_solution
             for t in load_tasks(record["benchmark"], data_dir=data_dir)}
    by_bin: dict[str, list[str]] = {label: [] for _, label in SPAN_BINS}
    for t in common:
        if t in canon:
            by_bin[span_bin(canon[t])].append(t)
    lines.append("pass@1 by missing-span length: " + "; ".join(
        f"{label} ({len(ts)}) {100 * sum(a[t].passed for t in ts) / len(ts):.1f} vs "
        f"{100 * sum(b[t].passed for t in ts) / len(ts):.1f} %"
        for label, ts in by_bin.items() if ts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the missing chunks, then print the summary")
    r.add_argument("--benchmark", required=True)
    r.add_argument("--dir", type=Path, required=True)
    r.add_argument("--chunks", type=int, default=30)
    r.add_argument("--data-dir", type=Path, default=None,
                   help="HumanEval infilling files (default: the copy shipped with codefill)")
    c = sub.add_parser("compare", help="compare two `codefill bench infill --output` files "
                                       "task by task")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--benchmark", required=True)
    s = sub.add_parser("summary", help="merge the finished chunks of a run")
    s.add_argument("dir", type=Path)
    s.add_argument("--vs", type=Path, default=None, help="a second run to compare with")
    args = p.parse_args(argv)
    if args.cmd == "run":
        return run_chunks(args.benchmark, args.dir, args.chunks, extra, args.data_dir)
    if args.cmd == "compare":
        for path in (args.a, args.b):
            s = summarize(load_results(path))
            print(f"{path.name}: pass@1 {100 * s.pass_at[1]:.1f} %, tokens/task "
                  f"{s.mean_tokens:.1f}, latency median {s.median_latency_ms:.0f} ms"
                  + (f", any of the ranked candidates {100 * s.pass_list:.1f} %"
                     if s.pass_list is not None else ""))
        print(compare_text(args.a, args.b, args.benchmark))
        return 0
    print(summary_text(args.dir))
    if args.vs:
        print(summary_text(args.vs))
        print(compare_text(args.dir, args.vs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
